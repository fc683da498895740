"""Ground truth parsed from the papers' released string forms, and perfect answers that the real task
rewards score at their registered maximum."""

from __future__ import annotations

import json

import pytest

from vrft.orchestrator.core.ground_truth import GroundTruthError
from vrft.orchestrator.core.tasks import default_rewards, parse_ground_truth, perfect_answer
from vrft.verifiers import CompositeReward, reward_info

DET = (
    "<answer>[{'Position': [10, 20, 300, 400], 'Confidence': 1}, "
    "{'Position': [500, 500, 900, 880], 'Confidence': 1}]</answer>"
)


def assert_max(task: str, gt: dict) -> None:
    """The perfect answer gets every component's registered high through the task's composition."""
    specs = default_rewards(task)
    scores, errors = CompositeReward(specs).score(perfect_answer(task, gt), gt)
    assert not errors, errors
    for spec in specs:
        assert scores[spec.name] == pytest.approx(reward_info(spec.name).high), (task, spec.name, scores)
    assert scores["total"] == pytest.approx(sum(s.weight * reward_info(s.name).high for s in specs))


# ---- each released form ---------------------------------------------------------------------------


def test_detection_single_quoted_solution():
    gt = parse_ground_truth({"solution": DET}, "detection")
    assert gt == {"boxes": [[10, 20, 300, 400], [500, 500, 900, 880]]}
    assert_max("detection", gt)
    assert "'Position': [10, 20, 300, 400], 'Confidence': 1" in perfect_answer("detection", gt)


NEGATIVES = ["<answer>No Objects</answer>", "No Objects", "<answer> no objects. </answer>"]


@pytest.mark.parametrize("text", NEGATIVES)
def test_detection_negatives(text):
    gt = parse_ground_truth({"solution": text}, "detection")
    assert gt == {"boxes": []}
    assert perfect_answer("detection", gt).endswith("<answer>No Objects</answer>")
    assert_max("detection", gt)


def test_detection_duplicate_boxes_are_dropped_so_the_maximum_stays_reachable():
    item = "{'Position': [1, 2, 30, 40], 'Confidence': 1}"
    sol = f"<answer>[{item}, {item}]</answer>"
    gt = parse_ground_truth({"solution": sol}, "detection")
    assert gt == {"boxes": [[1, 2, 30, 40]]}
    assert_max("detection", gt)


def test_detection_multiline_and_single_item():
    sol = "<answer>\n{'Position': [0, 0, 1000, 1000], 'Confidence': 1}\n</answer>"
    assert parse_ground_truth({"solution": sol}, "detection") == {"boxes": [[0, 0, 1000, 1000]]}


def test_classification():
    gt = parse_ground_truth({"solution": "<answer>Boeing 737-200</answer>"}, "classification")
    assert gt == {"answer": "Boeing 737-200"}
    assert_max("classification", gt)
    assert parse_ground_truth({"solution": "red"}, "color") == {"answer": "red"}


LISA = ["(120,33),(640,999)", "<answer>(120,33),(640,999)</answer>", "<answer> (120, 33), (640,999)</answer>"]


@pytest.mark.parametrize("text", LISA)
def test_lisa_grounding(text):
    gt = parse_ground_truth({"solution": text}, "grounding")
    assert gt == {"box": [120, 33, 640, 999]}
    assert perfect_answer("grounding", gt).endswith("<answer>(120,33),(640,999)</answer>")
    assert_max("grounding", gt)


def test_reason_rft_counting_reads_answer_before_solution():
    row = {"id": "c1", "problem": "How many?", "answer": "3", "solution": "<answer>9</answer>", "cot": "x"}
    gt = parse_ground_truth(row, "counting")
    assert gt == {"answer": "3"}
    assert_max("counting", gt)
    assert parse_ground_truth({"solution": "<answer>4</answer>"}, "counting") == {"answer": "4"}
    assert parse_ground_truth({"answer": 7}, "counting") == {"answer": "7"}


@pytest.mark.parametrize("answer", ["B", "2.5", "\\frac{1}{2}"])
def test_reason_rft_structure(answer):
    gt = parse_ground_truth({"answer": answer}, "structure")
    assert gt == {"answer": answer}
    assert_max("structure", gt)


def test_trance_spatial():
    ans = "change_color(2, 'red'), change_size(0, 'small')"
    gt = parse_ground_truth({"answer": ans, "image": ["a.png", "b.png"]}, "spatial")
    assert gt == {"answer": ans}
    assert_max("spatial", gt)


def test_trance_repeated_steps_are_stated_once_in_the_perfect_answer():
    gt = parse_ground_truth({"answer": "change_color(2, 'red'), change_color(2, 'red')"}, "spatial")
    assert perfect_answer("spatial", gt).endswith("<answer>change_color(2, 'red')</answer>")
    assert_max("spatial", gt)


# ---- explicit ground_truth column ----------------------------------------------------------------


def test_explicit_ground_truth_wins_dict_or_json():
    row = {"solution": "<answer>No Objects</answer>", "ground_truth": json.dumps({"boxes": [[1, 1, 5, 5]]})}
    assert parse_ground_truth(row, "detection") == {"boxes": [[1, 1, 5, 5]]}
    row = {"answer": "3", "ground_truth": {"answer": "4"}}
    assert parse_ground_truth(row, "counting") == {"answer": "4"}
    # An empty ground_truth cell falls back to the released fields.
    assert parse_ground_truth({"answer": "3", "ground_truth": ""}, "counting") == {"answer": "3"}


def test_explicit_ground_truth_for_a_user_task_is_passed_through():
    assert parse_ground_truth({"ground_truth": '{"x": 1}'}, "my_task") == {"x": 1}


# ---- errors name the field and the reason ----------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "task", "words"),
    [
        ({"solution": "<answer>[{'Position': [1, 2, 3]}]</answer>"}, "detection", ["solution", "4 finite"]),
        ({"solution": "<answer>boxes here</answer>"}, "detection", ["solution", "Position"]),
        ({"solution": "<answer>[{'Position': [5, 5, 5, 9]}]</answer>"}, "detection", ["zero area"]),
        ({"solution": "<answer>[{'Position': [0, 0, 1200, 9]}]</answer>"}, "detection", ["0-1000"]),
        ({"solution": "<answer>[{'Position': [9, 0, 1, 9]}]</answer>"}, "detection", ["x2 < x1"]),
        ({"solution": "<answer>__import__('os')</answer>"}, "detection", ["solution"]),
        ({"solution": "<answer>(1,2),(3)</answer>"}, "grounding", ["solution", "(x1,y1),(x2,y2)"]),
        ({"problem": "q"}, "counting", ["'answer' or 'solution'"]),
        ({"answer": "   "}, "counting", ["'answer' or 'solution'"]),
        ({"answer": "<answer></answer>"}, "structure", ["answer", "empty"]),
        ({"answer": "rotate the cube"}, "spatial", ["answer", "func(object_id, value)"]),
        ({"answer": ["3"]}, "counting", ["'answer'", "string"]),
        ({"ground_truth": "{not json"}, "counting", ["ground_truth", "JSON"]),
        ({"ground_truth": "[1, 2]"}, "counting", ["ground_truth", "dict"]),
        ({"ground_truth": {"answer": "1"}}, "detection", ["ground_truth", "boxes"]),
        ({"ground_truth": {"boxes": [[1, 2, 3]]}}, "detection", ["ground_truth", "4 finite"]),
        ({"solution": "3"}, "ocr", ["'ocr'", "ground_truth"]),
    ],
)
def test_errors(row, task, words):
    with pytest.raises(GroundTruthError) as info:
        parse_ground_truth(row, task)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    assert isinstance(info.value, ValueError)


def test_perfect_answer_refuses_what_no_answer_format_can_say():
    with pytest.raises(GroundTruthError, match="integers"):
        perfect_answer("grounding", {"box": [1.5, 2, 3, 4]})
    with pytest.raises(GroundTruthError, match="ocr"):
        perfect_answer("ocr", {"answer": "x"})
