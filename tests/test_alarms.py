"""Reward-hacking alarms on crafted completions (no Ray): each alarm counts what it names, the
length drift is read against the first steps, and a threshold warns once."""

from __future__ import annotations

import logging

import pytest
from PIL import Image

from vrft.orchestrator.config.thresholds import AlarmThresholds
from vrft.orchestrator.core.records import PromptGroup, PromptItem, ScoredCompletion
from vrft.orchestrator.observe.alarms import AlarmWatch, alarm_metrics, names_several
from vrft.rollout.engine import Completion
from vrft.rollout.inputs import PromptInputs

THINK = "<think>looked</think>"


def group(task: str, gt: dict, texts: list[str], scores: list[dict] | None = None, finish=None,
          size=(100, 50)) -> PromptGroup:
    item = PromptItem("r0", PromptInputs(input_ids=[1, 2], images=[Image.new("RGB", size)]), gt, task)
    finish = finish or ["stop"] * len(texts)
    scores = scores or [{}] * len(texts)
    completions = [ScoredCompletion(Completion(j, t, [7] * 3, [0.0] * 3, finish[j], 0), scores=scores[j])
                   for j, t in enumerate(texts)]
    return PromptGroup(item, completions)


def rel1000(_item):
    return 1000.0, 1000.0


def test_empty_answers_are_counted():
    texts = [f"{THINK}<answer></answer>", f"{THINK}<answer>  </answer>", "", f"{THINK}<answer>rose</answer>"]
    g = group("classification", {"answer": "rose"}, texts)
    assert alarm_metrics([g], rel1000)["alarms/classification/empty_answer"] == 0.75


def test_answers_naming_several_classes_are_counted():
    truth = {"answer": "salt and pepper"}
    answers = ["A or B or C", "rose, tulip", "salt and pepper", "rose"]
    g = group("classification", truth, [f"{THINK}<answer>{a}</answer>" for a in answers])
    assert alarm_metrics([g], rel1000)["alarms/classification/multi_class"] == 0.5
    assert names_several("A or B or C", "daisy") and not names_several("orchid", "daisy")  # "or" is a word


def test_format_only_rewards_are_counted():
    paid = [{"classification": c, "format": f, "total": c + f} for c, f in ((0, 1), (1, 1), (0, 0), (0, 1))]
    g = group("classification", {"answer": "x"}, ["a"] * 4, scores=paid)
    assert alarm_metrics([g], rel1000)["alarms/classification/format_only"] == 0.5


def test_full_image_boxes_and_box_counts():
    full = "<answer>[{'Position': [0, 0, 1000, 1000], 'Confidence': 0.9}]</answer>"
    spray = "<answer>[" + ", ".join(f"{{'Position': [{i}, {i}, {i + 50}, {i + 50}], 'Confidence': 0.5}}"
                                    for i in range(0, 500, 100)) + "]</answer>"
    g = group("detection", {"boxes": [[10, 10, 200, 200], [300, 300, 400, 400]]},
              [full, full, spray, "<answer>No Objects</answer>"])
    m = alarm_metrics([g], rel1000)
    assert m["alarms/detection/full_image_boxes"] == pytest.approx(2 / 7)  # 2 of the 7 boxes named
    assert m["alarms/detection/pred_boxes"] == pytest.approx(7 / 4)
    assert m["alarms/detection/gt_boxes"] == 2.0
    assert m["alarms/detection/box_count_ratio"] == pytest.approx(7 / 8)


def test_full_image_in_the_resized_pixel_frame():
    """Qwen2.5-VL answers in resized pixels: 0..W' x 0..H' is the whole image whatever the numbers."""
    g = group("grounding", {"box": [0, 0, 10, 10]},
              ["<answer>(0,0),(112,56)</answer>", "<answer>(0,0),(56,28)</answer>"])
    m = alarm_metrics([g], lambda item: (112.0, 56.0), "resized_pixels")
    assert m["alarms/grounding/full_image_boxes"] == 0.5
    assert alarm_metrics([g], rel1000)["alarms/grounding/full_image_boxes"] == 0.0  # same numbers, 0-1000


def test_truncation_and_tasks_apart():
    cls = group("classification", {"answer": "x"}, ["a", "b"], finish=["length", "stop"])
    det = group("detection", {"boxes": []}, ["c", "d"], finish=["length", "length"])
    m = alarm_metrics([cls, det], rel1000)
    assert m["alarms/classification/truncated"] == 0.5 and m["alarms/detection/truncated"] == 1.0
    assert "alarms/classification/full_image_boxes" not in m and "alarms/detection/multi_class" not in m
    untasked = group(None, {"answer": "x"}, [""], finish=["stop"])
    assert alarm_metrics([untasked], rel1000)["alarms/empty_answer"] == 1.0


def test_length_drift_against_the_first_steps_and_one_warning(caplog):
    watch = AlarmWatch(AlarmThresholds(answer_length_drift=3.0, empty_answer=None, format_only=None,
                                       warmup_steps=0, min_samples=1), rel1000)
    short = group("counting", {"answer": "3"}, ["<answer>3</answer>", "<answer>44</answer>"])  # 1.5 chars
    long_ = group("counting", {"answer": "3"}, ["<answer>" + "9" * 30 + "</answer>"] * 2)
    with caplog.at_level(logging.WARNING, logger="vrft"):
        for step in range(1, 6):
            assert watch(step, [short])["alarms/counting/answer_length_drift"] == pytest.approx(1.0)
        assert watch(6, [long_])["alarms/counting/answer_length_drift"] == pytest.approx(20.0)
        watch(7, [long_])
    warnings = [r for r in caplog.records if "answer_length_drift" in r.getMessage()]
    assert len(warnings) == 1 and "step 6" in warnings[0].getMessage()

    # A resumed run rebuilds the baseline from its metrics and does not warn a second time.
    history = [{"step": s, "alarms/counting/answer_chars": 1.5} for s in range(1, 6)]
    history.append({"step": 6, "alarms/counting/answer_chars": 30.0,
                    "alarms/counting/answer_length_drift": 20.0})
    resumed = AlarmWatch(AlarmThresholds(), rel1000)
    resumed.restore(history)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vrft"):
        assert resumed(7, [long_])["alarms/counting/answer_length_drift"] == pytest.approx(20.0)
    assert not [r for r in caplog.records if "answer_length_drift" in r.getMessage()]


def test_thresholds_are_config_keys():
    from vrft.orchestrator.config.schema import LoggingConfig

    cfg = LoggingConfig.model_validate({"alarms": {"empty_answer": 0.5, "truncated": None}})
    assert cfg.alarms.empty_answer == 0.5 and cfg.alarms.truncated is None
    with pytest.raises(ValueError):
        LoggingConfig.model_validate({"alarms": {"emtpy_answer": 0.5}})


def test_one_early_spike_does_not_become_the_length_baseline():
    watch = AlarmWatch(AlarmThresholds(), rel1000)
    lengths = [6, 12, 75, 6, 6, 6]  # the demo's answers: a burst of rambling at step 3
    drift = [watch(s, [group("counting", {"answer": "3"}, ["<answer>" + "x" * n + "</answer>"])])
             ["alarms/counting/answer_length_drift"] for s, n in enumerate(lengths, start=1)]
    assert drift[2] > 3 and all(d > 1 / 3 for d in drift[3:])  # the spike stands out, the rest does not


def test_tags_spliced_into_the_answer_are_counted():
    """The CPU demo's policy found this: the format check passes and the class name is inside."""
    texts = ["<think>blue</think><answer>'Confidence</think><answer>blue</answer>",
             "<think>x</think><answer>blue</answer>", "no tags at all",
             "<think>x</think><answer><think></answer>"]
    g = group("classification", {"answer": "blue"}, texts)
    assert alarm_metrics([g], rel1000)["alarms/classification/tags_in_answer"] == pytest.approx(2 / 3)


def test_a_spliced_tag_is_not_a_list_of_classes():
    assert not names_several("red</think><answer>red", "red") and names_several("red/blue", "red")



def empty_share(share_of_64: int):
    """A counting group of 64 completions, `share_of_64` of them with an empty answer."""
    return group("counting", {"answer": "3"}, ["<answer></answer>"] * share_of_64
                 + ["<answer>3</answer>"] * (64 - share_of_64))


def alarm_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("alarm:")]


def test_no_warning_in_the_warm_up_nor_on_too_few_completions(caplog):
    """The shipped demo's step 1 had 64 completions and a share past its threshold: a false alarm.
    No warning inside the warm-up, none on fewer than min_samples completions; then one, on the
    value pooled over the latest steps."""
    only_empty = {"format_only": None, "tags_in_answer": None, "truncated": None, "empty_answer": 0.2}
    with caplog.at_level(logging.WARNING, logger="vrft"):
        warm = AlarmWatch(AlarmThresholds(warmup_steps=3, min_samples=1, **only_empty), rel1000)
        for step in (1, 2, 3):
            assert warm(step, [empty_share(32)])["alarms/counting/empty_answer"] == 0.5
        assert alarm_warnings(caplog) == []
        warm(4, [empty_share(32)])
        assert len(alarm_warnings(caplog)) == 1 and "at step 4" in alarm_warnings(caplog)[0]

        caplog.clear()
        few = AlarmWatch(AlarmThresholds(warmup_steps=0, min_samples=128, **only_empty), rel1000)
        few(1, [empty_share(32)])  # 64 completions: too few to warn on
        assert alarm_warnings(caplog) == []
        few(2, [empty_share(32)])  # pooled: 0.5 over 128
        assert len(alarm_warnings(caplog)) == 1
        assert "0.5 (95% lower bound 0.415) over the latest 128 completions at step 2" in alarm_warnings(caplog)[0]


def test_one_bad_step_among_good_ones_is_pooled_away(caplog):
    only_empty = {"format_only": None, "tags_in_answer": None, "truncated": None, "empty_answer": 0.2}
    watch = AlarmWatch(AlarmThresholds(warmup_steps=0, min_samples=128, **only_empty), rel1000)
    with caplog.at_level(logging.WARNING, logger="vrft"):
        for step in range(1, 6):
            watch(step, [empty_share(0)])
        assert watch(6, [empty_share(20)])["alarms/counting/empty_answer"] == pytest.approx(20 / 64)
        assert alarm_warnings(caplog) == []  # (20 + 0) / 128 = 0.16: under 0.2
        watch(7, [empty_share(20)])  # two bad steps in a row: 40 / 128 = 0.31
        assert len(alarm_warnings(caplog)) == 1


def test_a_share_at_its_threshold_by_nature_does_not_warn(caplog):
    """The shipped demo's tags_in_answer: about 0.04 a step (7 of 128 pooled
    is 0.055, past 0.05). A warning needs the share's 95% lower bound past the threshold."""
    from vrft.orchestrator.observe.alarms import wilson_lower

    assert wilson_lower(7 / 128, 128) == pytest.approx(0.0267, abs=1e-3)
    only_empty = {"format_only": None, "tags_in_answer": None, "truncated": None, "empty_answer": 0.05}
    watch = AlarmWatch(AlarmThresholds(warmup_steps=0, min_samples=128, **only_empty), rel1000)
    with caplog.at_level(logging.WARNING, logger="vrft"):
        for step, bad in enumerate([3, 4, 2, 3, 4, 3, 2, 4], start=1):  # 3-6% a step
            watch(step, [empty_share(bad)])
        assert alarm_warnings(caplog) == []
        for step in range(9, 11):  # a hack: a third of the answers empty
            watch(step, [empty_share(21)])
        assert len(alarm_warnings(caplog)) == 1
