"""Rollout records without Ray: boxes drawn where the frame puts them, records written and read
back, a resume's pruning, and the seeded choice of groups."""

from __future__ import annotations

import pytest
from PIL import Image

from vrft.orchestrator.core.boxes import GT_COLOUR, PRED_COLOUR, Box, draw_boxes, frame_extent
from vrft.orchestrator.core.records import PromptGroup, PromptItem, ScoredCompletion
from vrft.orchestrator.observe.rollout_log import (
    RolloutLog,
    choose_groups,
    load_records,
    prompt_text,
    prune_after,
    step_file,
)
from vrft.rollout.engine import Completion
from vrft.rollout.inputs import PromptInputs

QWEN = {"patch_size": 14, "merge_size": 2, "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280}


def close(pixel, colour, tol=60):
    return all(abs(a - b) <= tol for a, b in zip(pixel, colour, strict=True))


def test_boxes_land_where_the_rel1000_frame_puts_them():
    drawn = draw_boxes(Image.new("RGB", (200, 100), "white"), frame_extent("rel1000", (200, 100)),
                       gt=[Box(100, 200, 500, 800)], pred=[], side=400)
    assert drawn.size == (400, 200)
    # x 100..500 of 1000 → 40..200 of 400 px; y 200..800 of 1000 → 40..160 of 200 px
    assert close(drawn.getpixel((41, 100)), GT_COLOUR) and close(drawn.getpixel((199, 100)), GT_COLOUR)
    assert close(drawn.getpixel((120, 41)), GT_COLOUR) and close(drawn.getpixel((120, 159)), GT_COLOUR)
    assert drawn.getpixel((120, 100)) == (255, 255, 255)  # inside: the image, untouched
    assert drawn.getpixel((30, 100)) == (255, 255, 255)


def test_boxes_land_where_the_resized_pixel_frame_puts_them():
    """Qwen2.5-VL: a 200x100 image is resized to 196x112; its box (0,0)-(98,56) is the top-left quarter."""
    extent = frame_extent("resized_pixels", (200, 100), QWEN)
    assert extent == (196.0, 112.0)
    drawn = draw_boxes(Image.new("RGB", (200, 100), "white"), extent, gt=[],
                       pred=[Box(0, 0, 98, 56, confidence=0.75)], side=400)
    assert close(drawn.getpixel((199, 60)), PRED_COLOUR)  # right edge at 98/196 of 400 px
    assert close(drawn.getpixel((100, 99)), PRED_COLOUR)  # bottom edge at 56/112 of 200 px
    assert drawn.getpixel((300, 150)) == (255, 255, 255)


class FakeTokenizer:
    def decode(self, ids, skip_special_tokens=False):
        return "<|im_start|>user " + "<|image_pad|>" * ids.count(9) + " find it<|im_end|>"


def make_groups(n: int) -> list[PromptGroup]:
    groups = []
    for i in range(n):
        if i % 2 == 0:
            task, gt = "detection", {"boxes": [[100, 100, 500, 500]]}
            text = "<answer>[{'Position': [0, 0, 900, 900], 'Confidence': 0.3}]</answer>"
            scores = {"detection_iou": 0.2, "format": 0.0, "total": 0.2}
        else:
            task, gt = "classification", {"answer": "rose"}
            text, scores = "<answer>rose</answer>", {"classification": 1.0, "format": 0.0, "total": 1.0}
        inputs = PromptInputs(input_ids=[1, 9, 9, 9, 2], images=[Image.new("RGB", (64, 48))])
        item = PromptItem(f"row{i}", inputs, gt, task)
        completions = [
            ScoredCompletion(Completion(j, text, [5] * (j + 2), [0.0] * (j + 2), "stop", 3), dict(scores),
                             reward=scores["total"], advantage=0.5 - j)
            for j in range(2)]
        groups.append(PromptGroup(item, completions))
    return groups


def test_records_written_and_read_back(tmp_path):
    assert prompt_text(FakeTokenizer(), [9] * 300) == "<|im_start|>user <|image_pad|>×300 find it<|im_end|>"
    log = RolloutLog(tmp_path, every=2, per_step=3, seed=0, frame="rel1000", processor=FakeTokenizer())
    assert [s for s in range(1, 7) if log.due(s)] == [1, 2, 4, 6]
    groups = make_groups(4)
    path = log.write(2, groups)
    assert path == step_file(tmp_path, 2)
    df = load_records(tmp_path)
    chosen = choose_groups(4, 3, 0, 2)
    assert len(df) == 3 * 2 and sorted(set(df["group"])) == chosen
    for row in df.itertuples():
        scored = groups[row.group].completions[row.index]
        assert row.row_id == f"row{row.group}" and row.reward == scored.reward
        assert row.advantage == scored.advantage
        assert row.completion_tokens == row.index + 2 and row.policy_version == 3 and row.step == 2
        assert row.thumbnail[:2] == b"\xff\xd8"  # a JPEG
    det = df[df["task"] == "detection"]
    assert det["score/detection_iou"].notna().all() and det["score/classification"].isna().all()
    for row in det.itertuples():
        assert (tmp_path / "rollouts" / row.boxes_image).is_file()
        assert list(row.pred_boxes[0]) == [0.0, 0.0, 900.0, 900.0, 0.3]
        assert list(row.gt_boxes[0]) == [100.0, 100.0, 500.0, 500.0]
    assert df[df["task"] == "classification"]["boxes_image"].isna().all()


def test_seeded_choice_and_pruning_after_a_checkpoint(tmp_path):
    assert choose_groups(10, 4, 0, 7) == choose_groups(10, 4, 0, 7) != choose_groups(10, 4, 0, 8)
    assert choose_groups(3, 4, 0, 1) == [0, 1, 2]
    log = RolloutLog(tmp_path, every=1, per_step=2, seed=0, frame="rel1000", processor=FakeTokenizer())
    for step in (1, 2, 3):
        log.write(step, make_groups(2))
    (tmp_path / "rollouts" / "step_000004.parquet.tmp").write_bytes(b"half")
    gone = prune_after(tmp_path, 2)
    assert sorted(p.name for p in gone) == ["step_000003", "step_000003.parquet", "step_000004.parquet.tmp"]
    assert sorted(load_records(tmp_path)["step"].unique()) == [1, 2]


def test_wandb_boxes_are_fractions_of_the_frame():
    from vrft.orchestrator.core.boxes import wandb_boxes

    boxes = wandb_boxes([Box(100, 200, 500, 800)], [Box(0, 0, 98, 56, 0.75)], (196.0, 112.0))
    gt = boxes["ground_truth"]["box_data"][0]["position"]
    assert gt["minX"] == pytest.approx(100 / 196) and gt["maxY"] == pytest.approx(800 / 112)
    pred = boxes["predictions"]["box_data"][0]
    assert pred["position"] == {"minX": 0.0, "maxX": 0.5, "minY": 0.0, "maxY": 0.5}
    assert pred["scores"] == {"confidence": 0.75} and pred["box_caption"] == "0.75"
