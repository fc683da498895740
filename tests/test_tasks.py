"""The task registry: one record per paper task, found by name or alias; an unknown name is a one-line
error; each task's perfect answer gets full accuracy from its own default rewards (the real reward
code); a user's own task still routes by its name."""

from __future__ import annotations

import dataclasses

import pytest

from vrft.orchestrator.core.boxes import Box
from vrft.orchestrator.core.ground_truth import GroundTruthError
from vrft.orchestrator.core.tasks import (
    Task,
    canonical_task,
    default_rewards,
    find_task,
    get_task,
    gt_boxes,
    known_names,
    parse_ground_truth,
    perfect_answer,
    predicted_boxes,
    register_task,
    reward_routes,
    task_key,
    task_names,
)
from vrft.orchestrator.core.templates import template_names
from vrft.verifiers import CompositeReward, RewardSpec, reward_info

# One released row per paper task, in the form its paper released it (docs/sources.md V5, R6).
RELEASED = {
    "detection": {"solution": "<answer>[{'Position': [10, 20, 300, 400], 'Confidence': 1}, "
                              "{'Position': [500, 500, 900, 880], 'Confidence': 1}]</answer>"},
    "classification": {"solution": "<answer>Boeing 737-200</answer>"},
    "grounding": {"solution": "<answer>(120,33),(640,999)</answer>"},
    "counting": {"answer": "3", "solution": "<answer>4</answer>"},
    "structure": {"answer": "B"},
    "spatial": {"answer": "change_color(2, 'red'), change_size(0, 'small')"},
}


def test_the_six_paper_tasks_are_registered():
    assert task_names() == ["detection", "classification", "grounding", "counting", "structure", "spatial"]
    assert set(RELEASED) == set(task_names())  # a new task needs a released row here


@pytest.mark.parametrize("name", ["segmentation", "Detection", "", "ground truth"])
def test_an_unknown_name_is_one_line_listing_the_known_ones(name):
    with pytest.raises(ValueError) as err:
        get_task(name)
    message = str(err.value)
    assert "\n" not in message and f"unknown task {name!r}" in message
    for known in known_names():
        assert known in message
    assert find_task(name) is None


def test_aliases_resolve_to_their_task():
    expected = {"color": "classification", "clevr-math": "counting", "math": "structure", "geomath": "structure",
                "spatial_transform": "spatial", "trance": "spatial", "trance-only-full": "spatial",
                "lisa": "grounding"}
    for alias, name in expected.items():
        assert get_task(alias) is get_task(name)
        assert canonical_task(alias) == name == task_key(alias)
    assert sorted(known_names()) == sorted([*task_names(), *expected])


@pytest.mark.parametrize("name", task_names())
def test_perfect_answer_gets_full_accuracy_from_the_default_rewards(name):
    task = get_task(name)
    truth = parse_ground_truth(RELEASED[name], name)
    specs = task.default_rewards()
    scores, errors = CompositeReward(specs).score(perfect_answer(name, truth), truth)
    assert not errors, errors
    assert task.accuracy is not None and task.accuracy != "format"
    assert scores[task.accuracy] == pytest.approx(reward_info(task.accuracy).high)
    for spec in specs:
        assert scores[spec.name] == pytest.approx(reward_info(spec.name).high), (name, spec.name, scores)


@pytest.mark.parametrize("name", task_names())
def test_a_wrong_answer_does_not_get_full_accuracy(name):
    # the other side of the test above: the accuracy component can tell a wrong answer
    task = get_task(name)
    truth = parse_ground_truth(RELEASED[name], name)
    wrong = {"detection": "No Objects", "classification": "Airbus A380", "grounding": "(0,0),(10,10)",
             "counting": "7", "structure": "D", "spatial": "change_shape(1, 'cube')"}[name]
    scores = CompositeReward(task.default_rewards())(f"<think>x</think><answer>{wrong}</answer>", truth)
    assert scores[task.accuracy] < reward_info(task.accuracy).high


@pytest.mark.parametrize("name", task_names())
def test_each_record_is_whole(name):
    task = get_task(name)
    assert task.template in template_names()
    assert "arXiv" in task.source and "docs/sources.md" in task.source
    assert (task.truth_boxes is None) == (task.answer_boxes is None) == (task.to_frame is None)
    truth = parse_ground_truth(RELEASED[name], name)
    boxes = gt_boxes(name, truth)
    assert (boxes is not None) == task.has_boxes
    if task.has_boxes:
        assert boxes and all(isinstance(b, Box) for b in boxes)
        # the perfect answer names the ground truth's boxes
        drawn = predicted_boxes(name, perfect_answer(name, truth))
        assert [b.as_list()[:4] for b in drawn] == [b.as_list()[:4] for b in boxes]


def test_box_tasks_read_boxes_and_others_none():
    assert [n for n in task_names() if get_task(n).has_boxes] == ["detection", "grounding"]
    assert gt_boxes("grounding", {"box": [1, 2, 3, 4]}) == [Box(1, 2, 3, 4)]
    assert predicted_boxes("counting", "<answer>(1,2),(3,4)</answer>") is None
    assert gt_boxes(None, {"boxes": [[1, 2, 3, 4]]}) is None


def test_a_name_is_registered_once():
    taken = dataclasses.replace(get_task("counting"), name="counting2", aliases=("clevr-math",))
    with pytest.raises(ValueError, match="'clevr-math' is taken by 'counting'"):
        register_task(taken)
    assert find_task("counting2") is None
    assert isinstance(get_task("counting"), Task)


def test_a_users_own_task_routes_by_its_name():
    # A name that is no paper task is the user's: its rows bring their ground truth and the config its rewards.
    custom = {"ocr"}
    assert task_key("ocr", custom) == "ocr"
    with pytest.raises(ValueError, match="unknown task 'ocr'"):
        task_key("ocr")
    assert parse_ground_truth({"ground_truth": '{"text": "abc"}'}, "ocr") == {"text": "abc"}
    with pytest.raises(GroundTruthError, match="give its rows a 'ground_truth' column"):
        parse_ground_truth({"solution": "abc"}, "ocr")
    mine = [RewardSpec(name="format")]
    routes = reward_routes({"ocr": mine, "color": [RewardSpec(name="classification")]}, {"ocr", "classification",
                                                                                          "counting"})
    assert routes["ocr"] == mine
    assert [s.name for s in routes["classification"]] == ["classification"]  # keyed by an alias
    assert routes["counting"] == default_rewards("counting")
    assert gt_boxes("ocr", {"boxes": [[1, 2, 3, 4]]}) is None
