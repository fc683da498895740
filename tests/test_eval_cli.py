"""`vrft eval`: rescoring saved predictions equals a direct computation for every benchmark kind; the
tiny model runs a benchmark end to end through real Ray actors; bad input stops in one line before
any engine starts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from vrft.orchestrator.cli.main import main
from vrft.orchestrator.data.sources import load_rows
from vrft.testing.released import (
    make_lisa_grounding,
    make_reason_rft_counting,
    make_reason_rft_spatial,
    make_virft_classification,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_eval_benchmarks import IDS, answer, coco_fixture, direct_class_ap, mean_over  # noqa: E402


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rescore(tmp_path: Path, benchmark: str, records: list[dict], *args: str) -> dict:
    preds = write_jsonl(tmp_path / "predictions.jsonl", records)
    assert main(["eval", benchmark, "--predictions", str(preds), *args]) == 0
    return json.loads((tmp_path / "metrics.json").read_text())


def test_rescore_coco_with_the_baseline_existence_map(tmp_path):
    gt, emap, answers = coco_fixture(seed=3)
    for im in gt["images"]:
        im["file_name"] = f"{im['id']:012d}.jpg"
    ann, emap_file = tmp_path / "instances.json", tmp_path / "exist_map.json"
    ann.write_text(json.dumps(gt))
    emap_file.write_text(json.dumps(emap))
    asked = [(img, n) for img in range(1, 25) for n in ("bus", "train", "fire hydrant", "stop sign", "cat",
                                                          "dog", "bed", "toilet") if n in emap[str(img)]]
    records = [{"id": f"{img}:{n}", "completion": answer(answers[img, n])} for img, n in asked]
    report = rescore(tmp_path, "coco_fewshot_8", records, "--annotations", str(ann),
                     "--existence-map", str(emap_file))
    dets = [{"image_id": img, "category_id": IDS[n], "position": box, "score": c}
            for img, n in asked for box, c in answers[img, n]]
    from vrft.verifiers.evaluation.classes import COCO_FEWSHOT_8

    assert report["protocol"] == "existence_map"
    assert report["metrics"]["mAP"] == pytest.approx(mean_over(direct_class_ap(gt, dets), COCO_FEWSHOT_8), abs=1e-6)


@pytest.mark.parametrize(("neg2", "records", "ap"), [
    ([], {"1:papaya": "HIT", "2:papaya": "MISS"}, 100.0),  # not annotated, not a verified negative: ignored
    ([5], {"1:papaya": "HIT", "2:papaya": "MISS"}, 50.0),  # a verified negative: a false positive first
])
def test_rescore_lvis_federated_by_hand(tmp_path, neg2, records, ap):
    """`vrft eval lvis_fewshot --predictions` applies LVIS's federated rules (hand-computed AP)."""
    from test_eval_lvis import HIT, MISS, completion, hand_gt

    ann, emap = tmp_path / "lvis.json", tmp_path / "emap.json"
    ann.write_text(json.dumps(hand_gt(neg2, [])))
    emap.write_text(json.dumps({"1": ["papaya"], "2": ["papaya"]}))
    answers = {"HIT": completion(HIT), "MISS": completion(MISS)}
    report = rescore(tmp_path, "lvis_fewshot", [{"id": k, "completion": answers[v]} for k, v in records.items()],
                     "--annotations", str(ann), "--existence-map", str(emap), "--scoring", "strict")
    assert report["metrics"]["mAP"] == pytest.approx(ap, abs=1e-6)


def test_rescore_reason_rft_and_classification_and_lisa(tmp_path):
    counting = make_reason_rft_counting(tmp_path / "counting", n=6)
    rows = load_rows(counting)
    records = [{"id": r["id"], "completion": f"<think>x</think><answer>{r['answer'] if i % 2 else '99'}</answer>"}
               for i, r in enumerate(rows)]
    report = rescore(tmp_path, "clevr_math", records, "--data", str(counting))
    assert report["metrics"]["accuracy"] == pytest.approx(100 * 3 / 6, abs=1e-6)

    trance = make_reason_rft_spatial(tmp_path / "trance", n=4)
    rows = list(load_rows(trance))
    records = [{"id": r["id"], "completion": f"<answer>{r['answer']}</answer>"} for r in rows[:2]]
    report = rescore(tmp_path, "trance", records, "--data", str(trance))
    # each of the two answered items repeats its answer exactly (1 each), the two missing score 0
    assert report["metrics"]["score"] == pytest.approx(50.0, abs=1e-6) and report["counts"]["missing"] == 2

    aircraft = make_virft_classification(tmp_path / "aircraft", n=8)
    rows = load_rows(aircraft)
    labels = [r["solution"].removeprefix("<answer>").removesuffix("</answer>") for r in rows]
    # 5 exact; one with a word added (Visual-RFT's test: either contains the other, so right there, wrong
    # for the exact match); two naming no class at all
    answers = [*labels[:5], f"{labels[5]} aircraft", "Zeppelin NT", "Zeppelin NT"]
    assert not any("zeppelin" in lab.lower() for lab in labels)
    records = [{"id": str(i), "completion": f"<answer>{a}</answer>"} for i, a in enumerate(answers)]
    report = rescore(tmp_path, "aircraft", records, "--data", str(aircraft))
    assert report["metrics"]["accuracy_exact"] == pytest.approx(100 * 5 / 8, abs=1e-6)
    assert report["metrics"]["accuracy"] == pytest.approx(100 * 6 / 8, abs=1e-6)

    lisa = make_lisa_grounding(tmp_path / "lisa", n=4)
    rows = load_rows(lisa)
    # even rows answer their own box (IoU A / (A + 1e-6) in the script's formula, 1 to 1e-4 for these
    # boxes); odd rows a box of zero area (IoU 0)
    records = [{"id": str(i), "completion": "<answer>" + (r["solution"].removeprefix("<answer>").removesuffix(
        "</answer>") if i % 2 == 0 else "(0,0),(0,0)") + "</answer>"} for i, r in enumerate(rows)]
    report = rescore(tmp_path, "lisa_test", records, "--data", str(lisa))
    assert report["metrics"]["mIoU"] == pytest.approx(50.0, abs=1e-2)


def test_eval_end_to_end_through_ray_actors_then_rescore(tmp_path, tiny_model):
    """The tiny model answers a Reason-RFT benchmark on two rollout workers (Ray actors); the saved
    predictions rescore to the same metrics without a model."""
    counting = make_reason_rft_counting(tmp_path / "counting", n=6)
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "vrft.orchestrator.cli.main", "eval", "clevr_math", "--model", tiny_model,
                           "--data", str(counting), "--out", str(out), "--workers", "2", "--batch-size", "2",
                           "--max-new-tokens", "16", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "EVAL clevr_math accuracy=" in proc.stdout and "paper: 2B zero-shot 82.4" in proc.stdout
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in load_rows(counting)]
    assert all({"id", "completion", "answer", "score"} <= r.keys() for r in records)
    assert all(isinstance(r["completion"], str) and r["completion"] for r in records)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["timing"]["queries_per_s"] > 0 and metrics["sampling"]["max_new_tokens"] == 16
    assert metrics["metrics"]["accuracy"] == pytest.approx(100 * sum(r["score"] for r in records) / 6)
    again = tmp_path / "again"
    assert main(["eval", "clevr_math", "--predictions", str(out / "predictions.jsonl"), "--data", str(counting),
                 "--out", str(again)]) == 0
    assert json.loads((again / "metrics.json").read_text())["metrics"] == metrics["metrics"]


@pytest.mark.parametrize("case, needle", [
    ("unknown benchmark", "unknown benchmark 'cocoa'"),
    ("predictions do not match", "id 'nope' is not an item"),
    ("model path missing", "--model not found"),
    ("annotations missing", "annotations not found"),
])
def test_bad_input_one_line_before_engines(case, needle, tmp_path, tiny_model):
    counting = make_reason_rft_counting(tmp_path / "counting", n=2)
    args = {"unknown benchmark": ["cocoa", "--model", tiny_model, "--data", str(counting)],
            "predictions do not match": ["clevr_math", "--data", str(counting), "--predictions",
                                         str(write_jsonl(tmp_path / "p.jsonl", [{"id": "nope", "completion": ""}]))],
            "model path missing": ["clevr_math", "--model", str(tmp_path / "no_model"), "--data", str(counting)],
            "annotations missing": ["coco_fewshot_8", "--model", tiny_model, "--annotations",
                                    str(tmp_path / "none.json"), "--images", str(tmp_path)]}[case]
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vrft.orchestrator.cli.main", "eval", *args], capture_output=True,
                          text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Ray" not in proc.stderr and time.monotonic() - start < 60


def test_lisa_giou_ciou_through_box_prompted_sam(tmp_path):
    """`vrft eval lisa_test --sam`: every predicted box prompts SAM (here a tiny random one built
    offline), the mask is stored as RLE in the record, and gIoU/cIoU equal a direct computation."""
    import numpy as np

    from vrft.orchestrator.evaluation.driver import EvalSet, Query, add_sam_masks
    from vrft.testing.tiny_sam import make_tiny_sam
    from vrft.verifiers.evaluation.benchmarks import get_benchmark, score_report
    from vrft.verifiers.evaluation.sam_masks import BoxMasker, paper_box

    sam = make_tiny_sam(tmp_path / "sam")
    images = [Image.new("RGB", (60, 40), (200, 30, 30)), Image.new("RGB", (30, 50), (30, 30, 200))]
    gt_masks = [np.zeros((40, 60), bool), np.zeros((50, 30), bool)]
    gt_masks[0][5:30, 10:50] = True
    gt_masks[1][10:40, 5:25] = True
    completions = ["<answer>(100,100),(800,700)</answer>", "no box at all"]
    queries = [Query(str(i), "p", [img], None) for i, img in enumerate(images)]
    truth = {str(i): {"box": [0, 0, 10, 10], "width": img.size[0], "height": img.size[1], "mask": m}
             for i, (img, m) in enumerate(zip(images, gt_masks, strict=True))}
    eval_set = EvalSet(get_benchmark("lisa_test"), queries, truth)
    records = [{"id": str(i), "completion": c} for i, c in enumerate(completions)]
    add_sam_masks(eval_set, records, str(sam))
    report = score_report("lisa_test", records, truth)
    pred = BoxMasker(str(sam)).masks(images, [paper_box(c, *img.size) for c, img in zip(completions, images,
                                                                                          strict=True)])
    inter = [float((p & g).sum()) for p, g in zip(pred, gt_masks, strict=True)]
    union = [float((p | g).sum()) for p, g in zip(pred, gt_masks, strict=True)]
    assert not pred[1].any()  # no box: an empty mask
    # the box's mask is not empty and meets the ground truth, so the metrics below are not 0 == 0
    assert pred[0].any() and inter[0] > 0 and report["metrics"]["gIoU"] > 0
    assert report["metrics"]["gIoU"] == pytest.approx(100 * np.mean([i / (u + 1e-6) for i, u in zip(inter, union,
                                                                                                     strict=True)]), abs=1e-6)
    assert report["metrics"]["cIoU"] == pytest.approx(100 * sum(inter) / (sum(union) + 1e-6), abs=1e-6)


def test_metrics_carry_their_bootstrap_interval(tmp_path, capsys):
    """metrics.json and the printed table: the headline metric with its 95% interval over items, COCO's
    mAP with one over images; the same seeded numbers on every rescoring."""
    counting = make_reason_rft_counting(tmp_path / "counting", n=6)
    rows = load_rows(counting)
    records = [{"id": r["id"], "completion": f"<answer>{r['answer'] if i % 2 else '99'}</answer>"}
               for i, r in enumerate(rows)]
    report = rescore(tmp_path, "clevr_math", records, "--data", str(counting))
    m = report["metrics"]
    assert m["accuracy"] == pytest.approx(50.0) and 0 <= m["accuracy_ci_low"] < 50 < m["accuracy_ci_high"] <= 100
    assert report["intervals"] == {"method": "percentile bootstrap", "confidence": 0.95, "unit": "item",
                                   "resamples": 1000, "seed": 0}
    printed = capsys.readouterr().out
    assert f"accuracy         50.00  [{m['accuracy_ci_low']:.2f}, {m['accuracy_ci_high']:.2f}]" in printed
    assert rescore(tmp_path, "clevr_math", records, "--data", str(counting))["metrics"] == m  # seeded

    gt, emap, answers = coco_fixture(seed=3)
    ann, emap_file = tmp_path / "instances.json", tmp_path / "exist_map.json"
    ann.write_text(json.dumps(gt))
    emap_file.write_text(json.dumps(emap))
    asked = [(img, n) for img in range(1, 25) for n in ("bus", "train", "fire hydrant", "stop sign", "cat",
                                                          "dog", "bed", "toilet") if n in emap[str(img)]]
    records = [{"id": f"{img}:{n}", "completion": answer(answers[img, n])} for img, n in asked]
    report = rescore(tmp_path, "coco_fewshot_8", records, "--annotations", str(ann), "--existence-map",
                     str(emap_file), "--scoring", "strict")
    m = report["metrics"]
    assert m["mAP_ci_low"] <= m["mAP"] <= m["mAP_ci_high"] and report["intervals"]["unit"] == "image"


def test_intervals_reach_the_metrics_logged_between_training_steps(tmp_path, monkeypatch):
    """evaluate() (eval between GRPO steps) logs eval/<benchmark>/<metric>_ci_low/_ci_high."""
    import vrft.orchestrator.evaluation.between_steps as between
    from vrft.orchestrator.config.schema import EvalSpec, load_config
    from vrft.orchestrator.evaluation.driver import load_eval_set

    counting = make_reason_rft_counting(tmp_path / "counting", n=6)
    rows = load_rows(counting)
    canned = [f"<think>x</think><answer>{r['answer'] if i % 2 else '99'}</answer>" for i, r in enumerate(rows)]
    monkeypatch.setattr(between, "generate", lambda *args, **kw: (canned, {"seconds": 1.0}))
    cfg = load_config(Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml")
    spec = EvalSpec(benchmark="clevr_math", data=str(counting))
    logged = between.evaluate(cfg, [], None, [load_eval_set(spec)], step=4)
    assert logged["eval/clevr_math/accuracy"] == pytest.approx(50.0)
    assert logged["eval/clevr_math/accuracy_ci_low"] < 50 < logged["eval/clevr_math/accuracy_ci_high"]


def test_samples_give_pass_maj_and_mean_at_k(tmp_path, tiny_model):
    """`vrft eval --samples 3`: three sampled completions per query on the rollout actors; pass@3,
    maj@3 and mean@3 with their intervals; a greedy protocol without --temperature is refused first."""
    aircraft = make_virft_classification(tmp_path / "aircraft", n=4)
    refused = subprocess.run([sys.executable, "-m", "vrft.orchestrator.cli.main", "eval", "aircraft", "--model",
                              tiny_model, "--data", str(aircraft), "--samples", "3"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "decodes greedily" in refused.stderr and "Ray" not in refused.stderr
    counting = make_reason_rft_counting(tmp_path / "counting", n=4)
    out = tmp_path / "eval"
    base = [sys.executable, "-m", "vrft.orchestrator.cli.main", "eval", "clevr_math", "--model", tiny_model,
            "--data", str(counting), "--out", str(out), "--batch-size", "2", "--max-new-tokens", "8",
            "--no-progress", "--samples", "3"]
    proc = subprocess.run([*base, "--temperature", "1.0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    for name in ("pass@3", "maj@3", "mean@3"):
        assert m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"]
    assert m["pass@3"] >= m["mean@3"] and m["pass@3"] >= m["maj@3"]
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(len(r["samples"]) == 3 and r["samples"][0] == r["completion"] for r in records)
