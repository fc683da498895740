"""Evaluation with each paper's protocol, on the rollout engines (Ray actors), for `vrft eval` and for
evaluation between training steps.

    eval_set = load_eval_set("clevr_math", data="…/Visual-Counting-id-test-1k.json")
    completions = generate(workers, processor, eval_set, batch_size=8)       # Ray actors, batched
    records, report = score(eval_set, completions)   # predictions.jsonl lines, metrics beside the paper

An `EvalSet` is the benchmark's queries (prompt text, images, the item's ground truth) and the
ground truth in the form `vrft.verifiers.benchmarks.rescore` takes. The benchmark fixes the protocol:
prompt template, R1 system prompt, decoding (greedy for Visual-RFT; T 0.1, top-p 0.9, top-k 50, 768
tokens for Reason-RFT), image resolution, answer parsing and metric (verifiers/benchmarks.py).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from tqdm import tqdm

from vrft.orchestrator.core.ground_truth import GroundTruthError, parse_grounding
from vrft.orchestrator.core.templates import render_prompt
from vrft.orchestrator.data.sources import decode_image, load_rows
from vrft.orchestrator.evaluation.intervals import add_intervals
from vrft.rollout.engine import SamplingParams
from vrft.rollout.inputs import build_prompt_inputs
from vrft.verifiers.benchmarks import (
    R1_SYSTEM_PROMPT,
    SCORINGS,
    Benchmark,
    benchmark_queries,
    get_benchmark,
    prediction_record,
    score_report,
)
from vrft.verifiers.eval_detection import load_ground_truth

# The prompt each Reason-RFT benchmark wraps its question in (the RL/CoT templates; docs/sources.md R5).
BENCHMARK_TEMPLATES = {
    "clevr_math": "reason_rft/counting", "super_clevr": "reason_rft/counting",
    "geomath": "reason_rft/structure", "geometry3k": "reason_rft/structure",
    "trance": "reason_rft/spatial", "trance_left": "reason_rft/spatial", "trance_right": "reason_rft/spatial",
}


@dataclass
class Query:
    id: str
    problem: str
    images: list  # undecoded image values (paths, {"bytes","path"} dicts) or PIL images
    truth: Any = None  # the item's ground truth in the form prediction_record takes


@dataclass
class EvalSet:
    benchmark: Benchmark
    queries: list[Query]
    ground_truth: Any  # what rescore takes: {id: item} or a COCO/LVIS dict
    options: dict = field(default_factory=dict)  # scoring; detection: protocol, existence_map

    @property
    def system_prompt(self) -> str | None:
        return R1_SYSTEM_PROMPT if self.benchmark.r1_system_prompt else None


def _text_answer(row: dict, where: str, scoring: str = "strict") -> str:
    """The item's answer: under strict scoring the stripped `<answer>` content of its first answer
    field (or the field stripped); under paper scoring a released row's `answer` exactly as it is, as
    Reason-RFT's script compares it (its exact match does not strip the solution)."""
    from vrft.verifiers.answers import extract_answer

    if scoring == "paper" and isinstance(row.get("answer"), str) and row["answer"].strip():
        return row["answer"]
    for name in ("answer", "solution", "label"):
        value = row.get(name)
        if value is not None and str(value).strip():
            inner = extract_answer(str(value), dotall=True)
            return (str(value) if inner is None else inner).strip()
    raise ValueError(f"{where}: no 'answer', 'solution' or 'label' field")


def _images(row: dict) -> list:
    raw = row.get("image")
    return raw if isinstance(raw, list) else ([] if raw is None else [raw])


def _row_queries(b: Benchmark, rows, template: str | None,
                 scoring: str = "paper") -> tuple[list[Query], dict[str, Any]]:
    """Queries and `{id: truth}` of a row-per-item benchmark (classification, LISA, Reason-RFT)."""
    template = template if template is not None else BENCHMARK_TEMPLATES.get(b.name)
    queries, truth = [], {}
    for index, row in enumerate(rows):
        rid = str(row.get("id") if row.get("id") not in (None, "") else index)
        where = f"{b.name} row {rid}"
        if rid in truth:
            raise ValueError(f"{where}: id appears twice")
        problem = render_prompt(template, row) if template else row.get("problem")
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(f"{where}: no 'problem' text (or give a template)")
        if not _images(row):
            raise ValueError(f"{where}: no 'image'")
        if b.kind == "lisa":
            item = _lisa_truth(row, where)
        else:
            item = _text_answer(row, where, scoring if b.kind in ("answer", "trance") else "strict")
        truth[rid] = item
        queries.append(Query(rid, problem, _images(row), item))
    return queries, truth


def _lisa_truth(row: dict, where: str) -> dict:
    """The LISA script's ground truth: the box in the image's pixels, and the image size."""
    image = decode_image(_images(row)[0])
    if image is None:
        raise ValueError(f"{where}: the image cannot be decoded")
    try:
        box = parse_grounding(str(row.get("solution") or row.get("answer") or ""), "solution")["box"]
    except GroundTruthError as err:
        raise ValueError(f"{where}: {err}") from None
    w, h = image.size
    truth = {"box": [box[0] * w / 1000, box[1] * h / 1000, box[2] * w / 1000, box[3] * h / 1000],
             "width": w, "height": h}
    if row.get("mask") is not None:  # the ground-truth mask (RLE or array): gIoU / cIoU
        truth["mask"] = row["mask"]
    return truth


def add_sam_masks(eval_set: EvalSet, records: list[dict], sam_path: str) -> None:
    """LISA gIoU/cIoU as the paper: each predicted box prompts SAM (single-mask output), the mask is
    stored in the record as RLE (orchestrator/evaluation/sam_masks.py)."""
    from vrft.orchestrator.evaluation.sam_masks import BoxMasker, add_masks, paper_box

    images = [decode_image(q.images[0]) for q in eval_set.queries]
    ok = [i for i, img in enumerate(images) if img is not None]  # an undecodable one keeps no mask
    boxes = [paper_box(records[i]["completion"], *images[i].size) for i in ok]
    add_masks([records[i] for i in ok], [images[i] for i in ok], boxes, BoxMasker(sam_path))


def _detection_queries(b: Benchmark, annotations: str, images: str | None, limit: int | None,
                       protocol: str | None, existence_map: str | None) -> EvalSet:
    gt_path = Path(annotations)
    if not gt_path.is_file():
        raise ValueError(f"{b.name}: annotations not found: {gt_path}")
    gt = json.loads(gt_path.read_text(encoding="utf-8"))
    if limit is not None:  # the metric is over the evaluated images only
        gt = copy.copy(gt)
        gt["images"] = gt["images"][:limit]
        keep = {im["id"] for im in gt["images"]}
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    emap = json.loads(Path(existence_map).read_text(encoding="utf-8")) if existence_map else None
    options = {"protocol": protocol or ("existence_map" if emap is not None else "gt_categories")}
    if emap is not None:
        options["existence_map"] = emap
    queries_by_id = benchmark_queries(b.name, gt, protocol=options["protocol"], existence_map=emap)
    # COCO names each image's file; LVIS v1 gives only its coco_url (…/val2017/000000397133.jpg).
    files = {im["id"]: im.get("file_name") or "/".join(str(im.get("coco_url", "")).split("/")[-2:]) or None
             for im in gt["images"]}
    queries = []
    for qid, (image_id, category) in queries_by_id.items():
        image = []
        if images is not None:  # rescoring needs no images
            if not files[image_id]:
                raise ValueError(f"{b.name}: image {image_id} has no file_name in {gt_path}")
            path = Path(images) / files[image_id]
            if not path.is_file():
                raise ValueError(f"{b.name}: image {image_id} not found: {path}")
            image = [str(path)]
        queries.append(Query(qid, render_prompt("visual_rft/detection", {"category": category}), image))
    load_ground_truth(gt)  # a malformed annotation file fails here, before any engine starts
    return EvalSet(b, queries, gt, options)


def load_eval_set(benchmark: str, data: str | None = None, *, split: str | None = None,
                  annotations: str | None = None, images: str | None = None, limit: int | None = None,
                  protocol: str | None = None, existence_map: str | None = None,
                  template: str | None = None, rescoring: bool = False, scoring: str = "paper") -> EvalSet:
    """The benchmark's queries from the user's copy of its data (detection: a COCO/LVIS annotation
    file and its image folder; the others: rows in any `data.path` form). Bad input is a one-line
    ValueError, raised before any engine starts. `rescoring`: no model will run, so detection needs
    no images. `scoring`: how answers are read (`paper` or `strict`, vrft.verifiers.benchmarks)."""
    b = get_benchmark(benchmark)
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; choose {' or '.join(SCORINGS)}")
    if b.kind in ("coco", "lvis"):
        if not annotations or not (images or rescoring):
            raise ValueError(f"{b.name} needs --annotations (a COCO/LVIS json) and --images (its folder)")
        eval_set = _detection_queries(b, annotations, images, limit, protocol, existence_map)
        eval_set.options["scoring"] = scoring
        return eval_set
    if protocol or existence_map:
        raise ValueError(f"{b.name} is not a detection benchmark: --protocol/--existence-map do not apply")
    if not data:
        raise ValueError(f"{b.name} needs --data (its test rows: a hub id, a save_to_disk folder or a JSON file)")
    rows = load_rows(data, split=split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    queries, truth = _row_queries(b, rows, template, scoring)
    return EvalSet(b, queries, truth, {"scoring": scoring})


def sampling_of(b: Benchmark, seed: int = 0, max_new_tokens: int | None = None, samples: int = 1,
                temperature: float | None = None) -> SamplingParams:
    s = b.sampling
    return SamplingParams(n=samples, temperature=s.temperature if temperature is None else temperature,
                          top_p=s.top_p, top_k=s.top_k, max_new_tokens=max_new_tokens or s.max_new_tokens, seed=seed)


def generate(workers: list, processor, eval_set: EvalSet, batch_size: int = 8, progress: bool = True,
             seed: int = 0, max_new_tokens: int | None = None, samples: int = 1,
             temperature: float | None = None) -> tuple[list, dict[str, float]]:
    """One completion per query, in query order, from the rollout workers: chunks of `batch_size`
    go to whichever worker is free (dynamic load balance), with a progress bar. A query whose image
    does not decode gets an empty completion (it scores 0) and is counted. `samples` > 1: a list of
    that many completions per query (`vrft eval --samples`)."""
    sampling = sampling_of(eval_set.benchmark, seed, max_new_tokens, samples, temperature)
    queries = eval_set.queries
    completions: list = [""] * len(queries) if samples == 1 else [[""] * samples for _ in queries]
    undecodable = 0
    chunks = [range(i, min(i + batch_size, len(queries))) for i in range(0, len(queries), batch_size)]
    free, running = list(workers), {}
    bar = tqdm(total=len(queries), desc=f"eval {eval_set.benchmark.name}", unit="query", disable=not progress)
    start = time.perf_counter()
    while chunks or running:
        while free and chunks:
            chunk = chunks.pop(0)
            inputs, kept = [], []
            for i in chunk:
                images = [decode_image(v) for v in queries[i].images]
                if any(img is None for img in images):
                    undecodable += 1
                    continue
                inputs.append(build_prompt_inputs(processor, queries[i].problem, images, eval_set.system_prompt))
                kept.append(i)
            if not kept:
                bar.update(len(chunk))
                continue
            worker = free.pop(0)
            running[worker.generate.remote(inputs, sampling)] = (worker, kept, len(chunk))
        if not running:
            continue
        done, _ = ray.wait(list(running), num_returns=1)
        worker, kept, size = running.pop(done[0])
        groups, _ = ray.get(done[0])
        for i, group in zip(kept, groups, strict=True):
            completions[i] = group[0].text if samples == 1 else [c.text for c in group]
        free.append(worker)
        bar.update(size)
    bar.close()
    seconds = time.perf_counter() - start
    return completions, {"seconds": seconds, "queries_per_s": len(queries) / max(seconds, 1e-9),
                         "undecodable_images": float(undecodable)}


def score(eval_set: EvalSet, completions: list[str]) -> tuple[list[dict], dict[str, Any]]:
    """The predictions.jsonl records and the benchmark's report (metrics ×100, protocol, counts, paper)."""
    b = eval_set.benchmark
    scoring = eval_set.options.get("scoring", "paper")
    records = [prediction_record(b.name, q.id, c, q.truth, scoring)
               for q, c in zip(eval_set.queries, completions, strict=True)]
    report = score_report(b.name, records, eval_set.ground_truth, **eval_set.options)
    return records, add_intervals(eval_set, records, report)  # <metric>_ci_low/_ci_high (intervals.py)


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null: JSON has no such numbers (json.dumps would write a bare NaN that
    strict readers refuse); the in-memory report keeps the float."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def metrics_json(report: dict[str, Any]) -> str:
    """metrics.json's text: the report, NaN written as null."""
    return json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n"


def write_outputs(out: Path, records: list[dict], report: dict[str, Any]) -> None:
    """`predictions.jsonl` and `metrics.json`, each written whole then renamed (never half a file)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("predictions.jsonl", "".join(json.dumps(_json_safe(r)) + "\n" for r in records)),
                       ("metrics.json", metrics_json(report))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)


def read_predictions(path: str | Path) -> list[dict]:
    """A saved predictions.jsonl; a line that is not JSON is a one-line error naming it."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"predictions file not found: {p}")
    records = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise ValueError(f"{p}:{n}: not a JSON line") from None
    return records


def format_report(report: dict[str, Any]) -> str:
    """The metrics beside every number the paper prints for this benchmark."""
    paper = report.get("paper") or {}
    queries = f", {report['protocol']} queries" if report.get("protocol", "paper") != "paper" else ""
    lines = [f"{report['benchmark']} ({report.get('scoring', 'paper')} scoring{queries})"]
    metrics = report["metrics"]
    for metric, value in metrics.items():
        if metric.endswith(("_ci_low", "_ci_high")):
            continue  # printed beside their metric
        ref = [f"{size} {setting} {row[metric]:.1f}" for size, rows in paper.items()
               for setting, row in rows.items() if metric in row]
        ci = f"  [{metrics[metric + '_ci_low']:.2f}, {metrics[metric + '_ci_high']:.2f}]" \
            if metric + "_ci_low" in metrics else ""
        lines.append(f"  {metric:<14}{value:8.2f}{ci}" + (f"   paper: {', '.join(ref)}" if ref else ""))
    if "intervals" in report:
        how = report["intervals"]
        lines.append(f"  [low, high]: {how['confidence']:.0%} {how['method']} intervals over {how['unit']}s "
                     f"({how['resamples']} resamples, seed {how['seed']})")
    counts = report.get("counts", {})
    if counts:
        lines.append("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    lines += [f"  warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)
