"""The evaluation driver: a benchmark's rows loaded and run on the rollout engines (Ray actors), for
`vrft eval` and for evaluation between training steps. It holds no benchmark's knowledge: the
benchmark's record (vrft.verifiers.evaluation) names its prompt template, system prompt, decoding,
resolution, how its rows are read, its metric and the paper's numbers.

    eval_set = load_eval_set(EvalSpec(benchmark="clevr_math", data="…/Visual-Counting-id-test-1k.json"))
    completions = generate(workers, processor, eval_set, batch_size=8)       # Ray actors, batched
    records, report = score(eval_set, completions)   # predictions.jsonl lines, metrics beside the paper

An `EvalSet` is the benchmark's queries (prompt text, images, the item's ground truth) and the
ground truth in the form `vrft.verifiers.evaluation.benchmarks.rescore` takes.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from tqdm import tqdm

from vrft.orchestrator.config.schema import EvalSpec
from vrft.orchestrator.core.ground_truth import GroundTruthError, parse_grounding
from vrft.orchestrator.core.templates import NOT_VERBATIM, render_prompt, render_text, template_names
from vrft.orchestrator.data.sources import decode_image, load_rows
from vrft.orchestrator.evaluation.intervals import add_intervals
from vrft.rollout.engine import SamplingParams
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.turns import usage
from vrft.verifiers.evaluation.benchmarks import (
    R1_SYSTEM_PROMPT,
    SCORINGS,
    Benchmark,
    benchmark_queries,
    get_benchmark,
    prediction_record,
    score_report,
)
from vrft.verifiers.evaluation.detection import load_ground_truth
from vrft.verifiers.evaluation.rows import RowReaders, images_of, is_item, item_truth


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
    prompt: dict = field(default_factory=dict)  # which prompt text ran and whether it is the paper's verbatim

    @property
    def system_prompt(self) -> str | None:
        return R1_SYSTEM_PROMPT if self.benchmark.r1_system_prompt else None


def _image_size(row: dict) -> tuple[int, int]:
    images = images_of(row)
    image = decode_image(images[0]) if images else None
    if image is None:
        raise ValueError("the image cannot be decoded")
    return image.size


def _solution_box(text: str) -> list[float]:
    try:
        return parse_grounding(text, "solution")["box"]
    except GroundTruthError as err:
        raise ValueError(str(err)) from None


READERS = RowReaders(image_size=_image_size, solution_box=_solution_box)


Render = Callable[[dict], str]


def _prompt(b: Benchmark, spec: EvalSpec) -> tuple[Render | None, dict]:
    """How each query's prompt text is made (None: the row's own `problem`), and what the report says
    of it: the template, whether it is the paper's verbatim text (`"as supplied"` for a user's file)."""
    if spec.template and spec.template_file:
        raise ValueError("give --template or --template-file, not both")
    if spec.template_file:
        path = Path(spec.template_file)
        if not path.is_file():
            raise ValueError(f"--template-file not found: {path}")
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise ValueError(f"--template-file {path} is empty")
        where = f"--template-file {path}"
        render_text(text, _FieldProbe(), where)  # a malformed template fails here, before any row
        return (lambda row: render_text(text, row, where)), {
            "template": f"file {path}", "verbatim": "as supplied", "note": "the user's template text"}
    if spec.template:
        if spec.template not in template_names():
            raise ValueError(f"unknown template {spec.template!r} (known: {', '.join(template_names())})")
        verbatim = spec.template not in NOT_VERBATIM
        return (lambda row: render_prompt(spec.template, row)), {
            "template": spec.template, "verbatim": verbatim,
            "note": "" if verbatim else "vrft's own wording (orchestrator/core/templates.py)"}
    info = {"template": b.template or "the rows' own problem", "verbatim": b.template_verbatim,
            "note": b.template_note}
    return ((lambda row: render_prompt(b.template, row)) if b.template else None), info


class _FieldProbe(dict):
    """Any field a template asks for, so its syntax is checked before the rows are read."""

    def get(self, key, default=None):
        return "x"


def _row_queries(b: Benchmark, rows, render: Render | None,
                 scoring: str = "paper") -> tuple[list[Query], dict[str, Any]]:
    """Queries and `{id: truth}` of a row-per-item benchmark (classification, LISA, Reason-RFT)."""
    queries, truth = [], {}
    for index, row in enumerate(rows):
        if not is_item(b, row, scoring):
            continue
        rid = str(row.get("id") if row.get("id") not in (None, "") else index)
        where = f"{b.name} row {rid}"
        if rid in truth:
            raise ValueError(f"{where}: id appears twice")
        problem = render(row) if render is not None else row.get("problem")
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(f"{where}: no 'problem' text (or give a template)")
        if not images_of(row):
            raise ValueError(f"{where}: no 'image'")
        item = item_truth(b, row, where, scoring, READERS)
        truth[rid] = item
        queries.append(Query(rid, problem, images_of(row), item))
    return queries, truth


def add_sam_masks(eval_set: EvalSet, records: list[dict], sam_path: str) -> None:
    """LISA gIoU/cIoU as the paper: each record's predicted box prompts SAM (single-mask output), the
    mask is stored in the record as RLE (verifiers/evaluation/sam_masks.py). Records are matched to
    the queries by id, so a saved predictions.jsonl (in any order) gets its masks too."""
    from vrft.verifiers.evaluation.sam_masks import BoxMasker, add_masks, paper_box

    by_id = {str(q.id): q for q in eval_set.queries}
    todo, images = [], []
    for record in records:
        query = by_id.get(str(record.get("id")))
        image = decode_image(query.images[0]) if query is not None and query.images else None
        if image is not None:  # an unknown id fails in scoring; an undecodable image keeps no mask
            todo.append(record)
            images.append(image)
    boxes = [paper_box(r["completion"], *img.size) for r, img in zip(todo, images, strict=True)]
    add_masks(todo, images, boxes, BoxMasker(sam_path))


def _detection_queries(b: Benchmark, annotations: str, images: str | None, limit: int | None,
                       protocol: str | None, existence_map: str | None, render: Render) -> EvalSet:
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
        queries.append(Query(qid, render({"category": category}), image))
    load_ground_truth(gt)  # a malformed annotation file fails here, before any engine starts
    return EvalSet(b, queries, gt, options)


def load_eval_set(spec: EvalSpec, *, rescoring: bool = False) -> EvalSet:
    """The benchmark's queries from the user's copy of its data (detection: a COCO/LVIS annotation
    file and its image folder; the others: rows in any `data.path` form). Bad input is a one-line
    ValueError, raised before any engine starts. `rescoring`: no model will run, so detection needs
    no images. `spec.scoring`: how answers are read (`paper` or `strict`, vrft.verifiers.evaluation)."""
    b = get_benchmark(spec.benchmark)
    scoring = spec.scoring
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; choose {' or '.join(SCORINGS)}")
    render, prompt = _prompt(b, spec)
    if b.kind in ("coco", "lvis"):
        if not spec.annotations or not (spec.images or rescoring):
            raise ValueError(f"{b.name} needs --annotations (a COCO/LVIS json) and --images (its folder)")
        eval_set = _detection_queries(b, spec.annotations, spec.images, spec.limit, spec.protocol,
                                      spec.existence_map, render)
        eval_set.options["scoring"] = scoring
        eval_set.prompt = prompt
        return eval_set
    if spec.protocol or spec.existence_map:
        raise ValueError(f"{b.name} is not a detection benchmark: --protocol/--existence-map do not apply")
    if not spec.data:
        raise ValueError(f"{b.name} needs --data (its test rows: a hub id, a save_to_disk folder or a JSON file)")
    rows = load_rows(spec.data, split=spec.split)
    if spec.limit is not None:
        rows = rows.select(range(min(spec.limit, len(rows))))
    queries, truth = _row_queries(b, rows, render, scoring)
    return EvalSet(b, queries, truth, {"scoring": scoring}, prompt)


def sampling_of(b: Benchmark, seed: int = 0, max_new_tokens: int | None = None, samples: int = 1,
                temperature: float | None = None) -> SamplingParams:
    s = b.sampling
    return SamplingParams(n=samples, temperature=s.temperature if temperature is None else temperature,
                          top_p=s.top_p, top_k=s.top_k, max_new_tokens=max_new_tokens or s.max_new_tokens, seed=seed)


def generate(workers: list, processor, eval_set: EvalSet, batch_size: int = 8, progress: bool = True,
             seed: int = 0, max_new_tokens: int | None = None, samples: int = 1,
             temperature: float | None = None, tools: list[dict] | None = None) -> tuple[list, dict]:
    """One completion per query, in query order, from the rollout workers: chunks of `batch_size`
    go to whichever worker is free (dynamic load balance), with a progress bar. A query whose image
    does not decode gets an empty completion (it scores 0) and is counted. `samples` > 1: a list of
    that many completions per query (`vrft eval --samples`). `tools`: the schemas of the image tools
    the engines run (rollout.tools); the completion is then the last turn's text, and the returned
    info's `trajectories` holds each query's (its first sample's; None where its image did not decode)."""
    sampling = sampling_of(eval_set.benchmark, seed, max_new_tokens, samples, temperature)
    queries = eval_set.queries
    completions: list = [""] * len(queries) if samples == 1 else [[""] * samples for _ in queries]
    undecodable = 0
    trajectories: list = [None] * len(queries)
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
                inputs.append(build_prompt_inputs(processor, queries[i].problem, images, eval_set.system_prompt,
                                                  tools))
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
            if tools is not None:
                trajectories[i] = group[0].trajectory
        free.append(worker)
        bar.update(size)
    bar.close()
    seconds = time.perf_counter() - start
    info = {"seconds": seconds, "queries_per_s": len(queries) / max(seconds, 1e-9),
            "undecodable_images": float(undecodable)}
    return completions, ({**info, "trajectories": trajectories} if tools is not None else info)


def turn_summaries(trajectory) -> list[dict]:
    """A trajectory's turns as predictions.jsonl keeps them: the model's text, the tool it called, what
    came back and the error kind (rollout/turns.py)."""
    if trajectory is None:
        return []
    return [{"text": t.text, "tool": t.tool, "call": t.call, "observation": t.observation, "error": t.error}
            for t in trajectory.turns]


def tool_report(trajectories: list, names: list[str], max_turns: int) -> dict[str, Any]:
    """metrics.json's `tools`: what ran, and how the model used it over the queries."""
    return {"names": list(names), "max_turns": max_turns, **usage(trajectories)}


def score(eval_set: EvalSet, completions: list[str]) -> tuple[list[dict], dict[str, Any]]:
    """The predictions.jsonl records and the benchmark's report (metrics ×100, protocol, counts, paper)."""
    b = eval_set.benchmark
    scoring = eval_set.options.get("scoring", "paper")
    records = [prediction_record(b.name, q.id, c, q.truth, scoring)
               for q, c in zip(eval_set.queries, completions, strict=True)]
    return records, add_intervals(eval_set, records, report_of(eval_set, records))  # <metric>_ci_low/_ci_high


def report_of(eval_set: EvalSet, records: list[dict]) -> dict[str, Any]:
    """The benchmark's report of these records, with the prompt that ran (`prompt`: its template and
    whether it is the paper's verbatim text; a warning when it is not)."""
    report = score_report(eval_set.benchmark.name, records, eval_set.ground_truth, **eval_set.options)
    report["prompt"] = dict(eval_set.prompt)
    if eval_set.prompt.get("verbatim") is False:
        report["warnings"] = [*report["warnings"], "the prompt is not the paper's verbatim text: "
                              f"{eval_set.prompt.get('note') or eval_set.prompt.get('template')}"]
    return report


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
    prompt = report.get("prompt") or {}
    flag = ", prompt NOT the paper's verbatim text" if prompt.get("verbatim") is False else ""
    lines = [f"{report['benchmark']} ({report.get('scoring', 'paper')} scoring{queries}{flag})"]
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
