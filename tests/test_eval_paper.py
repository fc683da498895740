"""The released evaluation scripts' readings (verifiers/evaluation/script_readings.py), case by case. Each expected
value was worked by hand from the script's behaviour as docs/evaluation.md describes it ("Scoring:
paper and strict"), beside what vrft's own (strict) reading gives, so each case shows a difference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vrft.verifiers.evaluation.script_readings import (
    answer_score_script,
    parse_detections_script,
    trance_order_bounds,
    trance_score_script,
)
from vrft.verifiers.math_reward import paper_verify
from vrft.verifiers.rewards_detection import parse_detections

T = "<think>x</think> "
TP, FP = "{'Position': [100, 100, 300, 300], 'Confidence': 0.9}", "{'Position': [500, 500, 600, 600], 'Confidence': 0.9}"


def boxes(read) -> list[list[float]]:
    return [list(d[1:]) for d in read.detections]


def strict_boxes(completion: str) -> list[list[float]]:
    parsed = parse_detections(completion)
    return [] if parsed is None else [list(d[1:]) for d in parsed[0]]


@pytest.mark.parametrize("completion, paper, strict", [
    # ", ..." deleted before parsing: the box survives (the lenient parser fails on the dots)
    (T + f"<answer>[{TP}, ...]</answer>", [[100, 100, 300, 300]], []),
    # truncated (no </answer>): never parsed by the script; recovered by the lenient parser
    (T + f"<answer>[{TP}, {{'Position': [5", [], [[100, 100, 300, 300]]),
    (f"<answer>[{TP}]", [], [[100, 100, 300, 300]]),
    # a list ending in "}": cut at the last "}," so only the first item stays
    (T + f"<answer>[{FP}, {TP}</answer>", [[500, 500, 600, 600]], [[500, 500, 600, 600], [100, 100, 300, 300]]),
    (T + f"<answer>[{TP}</answer>", [], [[100, 100, 300, 300]]),
    # no range checks: a coordinate past 1000 is kept
    (T + "<answer>[{'Position': [900, 900, 1100, 1100], 'Confidence': 0.9}]</answer>", [[900, 900, 1100, 1100]], []),
    # a missing Confidence: that item and every later one lost (the lenient parser drops the bad one)
    (T + "<answer>[{'Position': [500, 500, 600, 600]}, " + TP + "]</answer>", [], [[100, 100, 300, 300]]),
    (T + f"<answer>[{TP}, {{'Position': [10, 10, 20], 'Confidence': 0.5}}, {FP}]</answer>",
     [[100, 100, 300, 300]], [[100, 100, 300, 300], [500, 500, 600, 600]]),
    # an item without Position: the de-duplication raises and the whole answer is lost
    (T + f"<answer>[{TP}, {{'Confidence': 0.5}}]</answer>", [], [[100, 100, 300, 300]]),
    # a multi-line answer: the same either way
    (T + f"<answer>[\n{TP}\n]</answer>", [[100, 100, 300, 300]], [[100, 100, 300, 300]]),
])
def test_detection_answers_read_as_the_script_and_as_vrft(completion, paper, strict):
    assert boxes(parse_detections_script(completion)) == paper
    assert strict_boxes(completion) == strict


def test_detection_confidences_are_not_range_checked_and_duplicates_keep_the_first():
    read = parse_detections_script(T + "<answer>[{'Position': [100, 100, 300, 300], 'Confidence': 1.2}, "
                                       "{'Position': [100.0, 100, 300, 300], 'Confidence': 0.9}]</answer>")
    assert read.detections == [(1.2, 100.0, 100.0, 300.0, 300.0)]  # 100 and 100.0 are one Position
    assert strict_boxes(T + "<answer>[{'Position': [100, 100, 300, 300], 'Confidence': 1.2}, "
                            "{'Position': [100, 100, 300, 300], 'Confidence': 0.9}]</answer>") == []


def test_detection_losses_are_counted():
    lost = parse_detections_script(T + f"<answer>[{TP}, {{'Confidence': 0.5}}]</answer>")
    assert lost.parsed and lost.lost_whole and lost.detections == []
    cut = parse_detections_script(T + f"<answer>[{TP}, {{'Position': [1, 2, 3]}}, {FP}, {FP}]</answer>")
    assert (cut.stopped_at, cut.lost_after_stop, len(cut.detections)) == (1, 2, 1)  # the two FPs are one
    huge = parse_detections_script(T + "<answer>[{'Position': [1" + "0" * 400 + ", 1, 2, 3], 'Confidence': 1}]</answer>")
    assert huge.stopped_at == 0  # / 1000.0 overflows on an int past the largest float
    assert not parse_detections_script(T + "<answer>No Objects</answer>").parsed


def verify(gold: str, target: str) -> bool:
    return paper_verify(gold, target, tail=None)


@pytest.mark.parametrize("completion, solution, paper", [
    (r"<think>t</think><answer>4\sqrt{3}</answer>", r"4\sqrt{2}", 1.0),  # read up to the leading 4
    (r"<think>t</think><answer>\dfrac{1}{2}</answer>", "0.5", 0.0),  # \dfrac read as nothing
    ("The answer is 3. " + "a" * 4000, "3", 1.0),  # no tag: the whole text, not its last 4,000 characters
    ("<answer>The count is 3" + "." * 1000 + "</answer>", "3", 1.0),  # no cap on a tagged answer's length
    ("<answer>(B)</answer>", "B", 0.0),
    ("<answer>3</answer>", "3", 1.0),
])
def test_answers_read_as_reason_rfts_script(completion, solution, paper):
    from vrft.verifiers.evaluation.item_scores import answer_score

    assert answer_score_script(completion, solution, verify) == paper
    if "\\" in completion or len(completion) > 1000:  # vrft's strict reading differs on each of these
        assert answer_score(completion, solution) == 1.0 - paper


TRANCE_PRED = "<think>t</think><answer>change_color(1, red), change_color(1, blue)</answer>"
TRANCE_GT = "change_color(1, green), change_color(2, blue)"
_IN_CHILD = """
import sys
from vrft.verifiers.evaluation.script_readings import trance_items, trance_score_script
pred, sol = trance_items(sys.argv[1], sys.argv[2])
print(trance_score_script(sys.argv[1], sys.argv[2]), pred[0][2])
"""


def test_trance_scores_depend_on_the_hash_seed_as_the_script_does():
    """The greedy pass takes the first free solution item per predicted item in set order: with red
    first it matches (1, green) on (func, obj) and (2, blue) on (func, value): 0.5; with blue first
    blue takes (1, green) and red only (2, blue) on func: 0.375."""
    seen = set()
    for seed in range(8):
        out = subprocess.run([sys.executable, "-c", _IN_CHILD, TRANCE_PRED, TRANCE_GT], capture_output=True,
                             text=True, env={**os.environ, "PYTHONHASHSEED": str(seed)}, check=True)
        score, first = out.stdout.split()
        assert float(score) == {"red": 0.5, "blue": 0.375}[first]
        seen.add(float(score))
    assert seen == {0.5, 0.375}
    assert trance_order_bounds(TRANCE_PRED, TRANCE_GT) == (0.375, 0.5)
    assert trance_score_script(TRANCE_PRED, TRANCE_GT) in (0.375, 0.5)
    assert trance_order_bounds("<answer>change_color(1, green)</answer>", TRANCE_GT) == (0.5, 0.5)


# ---- end to end: `vrft eval BENCHMARK --predictions`, paper scoring beside strict --------------------
def rescore(tmp_path: Path, benchmark: str, records: list[dict], *args: str) -> dict:
    from vrft.orchestrator.cli.main import main

    preds = tmp_path / "predictions.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["eval", benchmark, "--predictions", str(preds), *args]) == 0
    return json.loads((tmp_path / "metrics.json").read_text())  # strict JSON: a NaN would fail here


EIGHT = {"bus": 6, "train": 7, "fire hydrant": 11, "stop sign": 13, "cat": 17, "dog": 18, "bed": 65, "toilet": 70}
ANCHOR = f"<think>y</think> <answer>[{TP}]</answer>"  # cat found exactly: AP_cat = 1


def eight_classes(path: Path, split: bool = False) -> Path:
    """One 1000x1000 image (the 0-1000 frame is its pixels) with one box per class at 100..300; with
    `split`, train and fire hydrant move to a second image."""
    images = [{"id": 1, "width": 1000, "height": 1000, "file_name": "1.jpg"},
              {"id": 2, "width": 1000, "height": 1000, "file_name": "2.jpg"}]
    anns = [{"id": i, "image_id": 2 if split and n in ("train", "fire hydrant") else 1, "category_id": c,
             "bbox": [100, 100, 200, 200], "area": 40000, "iscrowd": 0} for i, (n, c) in enumerate(EIGHT.items(), 1)]
    path.write_text(json.dumps({"images": images[:1 + split], "annotations": anns,
                                "categories": [{"id": c, "name": n} for n, c in EIGHT.items()]}))
    return path


@pytest.mark.parametrize("bus, paper, strict", [
    # mAP = (AP_bus + AP_cat) / 8 x 100 with AP_cat = 1: AP_bus 1 -> 25, 0.5 -> 18.75, 0 -> 12.5
    (T + f"<answer>[{TP}, ...]</answer>", 25.0, 12.5),
    (T + f"<answer>[{TP}, {{'Position': [5", 12.5, 25.0),
    (T + f"<answer>[{FP}, {TP}</answer>", 12.5, 18.75),
    (T + "<answer>[{'Position': [100, 100, 300, 300], 'Confidence': 0.8}, "
         "{'Position': [900, 900, 1100, 1100], 'Confidence': 0.9}]</answer>", 18.75, 25.0),
    (T + "<answer>[{'Position': [100, 100, 300, 300], 'Confidence': 1.2}, "
         "{'Position': [100, 100, 300, 300], 'Confidence': 0.9}]</answer>", 25.0, 12.5),
    (T + f"<answer>[{TP}, {{'Position': [500, 500, 600, 600]}}, {{'Position': [700, 700, 800, 800], "
         "'Confidence': 0.95}]</answer>", 25.0, 18.75),
    (T + f"<answer>[{TP}, {{'Confidence': 0.5}}]</answer>", 12.5, 25.0),
])
def test_coco_rescored_as_the_released_script_and_strict(tmp_path, bus, paper, strict):
    ann = eight_classes(tmp_path / "gt.json")
    records = [{"id": "1:cat", "completion": ANCHOR}, {"id": "1:bus", "completion": bus}]
    args = ("--annotations", str(ann), "--protocol", "gt_categories")
    got = rescore(tmp_path, "coco_fewshot_8", records, *args)
    assert got["scoring"] == "paper" and "coco_evaluation" in got["scoring_source"]
    assert got["metrics"]["mAP"] == pytest.approx(paper, abs=1e-9)
    got = rescore(tmp_path, "coco_fewshot_8", records, *args, "--scoring", "strict")
    assert got["scoring"] == "strict" and got["metrics"]["mAP"] == pytest.approx(strict, abs=1e-9)


def test_coco_class_without_ground_truth_makes_the_notebooks_mean_nan(tmp_path, capsys):
    ann = eight_classes(tmp_path / "gt.json", split=True)
    records = [{"id": "1:cat", "completion": ANCHOR}, {"id": "1:bus", "completion": ANCHOR}]
    args = ("--annotations", str(ann), "--protocol", "gt_categories", "--limit", "1")
    got = rescore(tmp_path, "coco_fewshot_8", records, *args)
    assert got["metrics"]["mAP"] is None  # NaN, written as null
    assert "no ground truth for train, fire hydrant" in got["warnings"][0] and "33.33" in got["warnings"][0]
    assert "warning: mAP is NaN" in capsys.readouterr().out
    strict = rescore(tmp_path, "coco_fewshot_8", records, *args, "--scoring", "strict")
    assert strict["metrics"]["mAP"] == pytest.approx(200 / 6, abs=1e-6)  # the six classes with ground truth
    whole = rescore(tmp_path, "coco_fewshot_8", records, "--annotations", str(ann), "--protocol", "gt_categories")
    assert whole["metrics"]["mAP"] == pytest.approx(25.0, abs=1e-9)


def test_counting_rescored_as_reason_rfts_script_and_strict(tmp_path):
    from vrft.testing.released import make_reason_rft_counting

    meta = make_reason_rft_counting(tmp_path / "counting", n=4)
    cases = [(r"<think>t</think><answer>4\sqrt{3}</answer>", r"4\sqrt{2}"),
             (r"<think>t</think><answer>\dfrac{1}{2}</answer>", "0.5"),
             ("The answer is 3. " + "a" * 4000, "3"),
             ("<answer>The count is 3" + "." * 1000 + "</answer>", "3")]
    rows = json.loads(meta.read_text())
    for row, (_, answer) in zip(rows, cases, strict=True):
        row["answer"] = answer  # the released schema, these answers
    meta.write_text(json.dumps(rows, indent=4))
    records = [{"id": row["id"], "completion": completion} for row, (completion, _) in zip(rows, cases, strict=True)]
    paper = rescore(tmp_path, "clevr_math", records, "--data", str(meta))
    assert paper["metrics"]["accuracy"] == pytest.approx(75.0) and paper["math_verify"]  # 1, 0, 1, 1
    strict = rescore(tmp_path, "clevr_math", records, "--data", str(meta), "--scoring", "strict")
    assert strict["metrics"]["accuracy"] == pytest.approx(25.0)  # 0, 1, 0, 0


def test_trance_metrics_say_what_another_hash_seed_could_score(tmp_path):
    from vrft.testing.released import make_reason_rft_spatial

    meta = make_reason_rft_spatial(tmp_path / "trance", n=2)
    rows = json.loads(meta.read_text())
    rows[0]["answer"], rows[1]["answer"] = TRANCE_GT, "change_size(3, large)"
    meta.write_text(json.dumps(rows, indent=4))
    records = [{"id": rows[0]["id"], "completion": TRANCE_PRED},
               {"id": rows[1]["id"], "completion": "<answer>change_size(3, large)</answer>"}]
    got = rescore(tmp_path, "trance", records, "--data", str(meta))
    assert got["score_bounds"] == [pytest.approx(100 * (0.375 + 1) / 2), pytest.approx(100 * (0.5 + 1) / 2)]
    assert got["counts"]["order_dependent"] == 1 and got["trance_order"] == "set"
    assert got["metrics"]["score"] in (pytest.approx(68.75), pytest.approx(75.0))
    assert "1 of 2 items score differently under another PYTHONHASHSEED" in got["warnings"][0]
