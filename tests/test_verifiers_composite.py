"""Registry, RewardSpec and CompositeReward: names, options, weights, the papers' task compositions,
and config errors that fail early in one line."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vrft import verifiers

ISSUE_REWARDS = {"format", "detection_iou", "detection_confidence", "classification", "grounding_iou",
                 "grounding_giou", "counting", "math", "math_tolerance", "choice", "spatial_transform",
                 "tool_bonus"}  # the image tools' reward (docs/tools.md)


def test_every_reward_of_the_issue_is_registered() -> None:
    assert set(verifiers.list_rewards()) == ISSUE_REWARDS
    for name in ISSUE_REWARDS:
        info = verifiers.reward_info(name)
        assert info.low == 0.0 and info.high == (2.0 if name == "grounding_giou" else 1.0)


def test_options_are_bound() -> None:
    c = "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}]</answer>"
    gt = {"boxes": [[0, 0, 100, 100], [200, 200, 300, 300]]}
    assert verifiers.get_reward("detection_iou")(c, gt) == 0.5
    assert verifiers.get_reward("detection_iou", denominator="pred")(c, gt) == 1.0


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"name": "detection_iuo"}, "unknown reward 'detection_iuo'"),
        ({"name": "detection_iou", "options": {"denominater": "pred"}}, "unknown option 'denominater'"),
        ({"name": "detection_iou", "options": {"denominator": "gt"}}, "'denominator' must be one of"),
        ({"name": "classification", "options": {"mode": "loose"}}, "'classification'"),
        ({"name": "classification", "options": {"classes": "cat"}}, "list of strings"),
        ({"name": "counting", "options": {"numeric": "yes"}}, "true or false"),
        ({"name": "math", "options": {"timeout_s": 0}}, "positive"),
        ({"name": "math_tolerance", "options": {"eps1": 0.3, "eps2": 0.2}}, "eps1 < eps2"),
        ({"name": "format", "options": {"strict": True}}, "options: none"),
        ({"name": "format", "wieght": 2}, "wieght"),
        ({"name": "total"}, "reserved"),
        ({"name": "format", "weight": float("nan")}, "finite"),
    ],
)
def test_bad_configs_fail_at_construction_in_one_line(spec: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        verifiers.CompositeReward([{"name": "format"}, spec])
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_reward_spec_forbids_extra_fields() -> None:
    with pytest.raises(ValidationError):
        verifiers.RewardSpec(name="format", wieght=1.0)
    assert verifiers.RewardSpec(name="format").options == {}


def test_composite_returns_every_component_and_the_weighted_total() -> None:
    specs = [verifiers.RewardSpec(name="format", weight=0.5), verifiers.RewardSpec(name="counting"),
             verifiers.RewardSpec(name="format", weight=2.0), verifiers.RewardSpec(name="counting", weight=-1.0,
                                                                                    options={"numeric": True})]
    comp = verifiers.CompositeReward(specs)
    got = comp("<think>t</think><answer>3.0</answer>", {"answer": "3"})
    assert got == {"format": 1.0, "counting": 0.0, "format#2": 1.0, "counting#2": 1.0,
                   "total": 0.5 + 2.0 - 1.0}
    assert comp.keys == ["format", "counting", "format#2", "counting#2"]
    assert comp.zeros() == dict.fromkeys([*comp.keys, "total"], 0.0)


def test_detection_task_is_the_papers_sum() -> None:
    from vrft.orchestrator.core.tasks import default_rewards, task_names

    comp = verifiers.CompositeReward(default_rewards("detection"))
    c = "<think>t</think><answer>[{'Position': [0, 0, 100, 100], 'Confidence': 0.8}]</answer>"
    got = comp(c, {"boxes": [[0, 0, 100, 100]]})
    assert got == {"detection_iou": 1.0, "detection_confidence": 0.8, "format": 1.0, "total": 2.8}
    for task in task_names():
        verifiers.CompositeReward(default_rewards(task))
    with pytest.raises(ValueError, match="unknown task"):
        default_rewards("segmentation")


def test_empty_task_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        verifiers.CompositeReward([])
