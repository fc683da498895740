"""Coordinate frames: a box drawn on a synthetic image, its ground truth converted into each family's
answer frame (sizes checked against the real transformers image processors), and a perfect answer in
that frame scoring IoU 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from vrft.orchestrator.core.frames import (
    PROCESSOR_DEFAULTS,
    answer_frame,
    box_to_frame,
    boxes_to_frame,
    model_family,
    resized_size,
)
from vrft.orchestrator.core.tasks import perfect_answer
from vrft.verifiers import get_reward

# Each family's processor as a run would build it: Visual-RFT's bounds for the Qwen2 families, the
# released Qwen3-VL bounds (patch 16) for Qwen3-VL, and a small max_pixels that forces a downscale.
PROCESSORS = {
    "qwen2_vl": dict(patch_size=14, merge_size=2, min_pixels=3136, max_pixels=401408),
    "qwen2_5_vl": dict(patch_size=14, merge_size=2, min_pixels=3136, max_pixels=401408),
    "qwen2_5_vl_small": dict(patch_size=14, merge_size=2, min_pixels=3136, max_pixels=128 * 28 * 28),
    "qwen3_vl": PROCESSOR_DEFAULTS["qwen3_vl"],
}
SIZES = [(100, 75), (640, 480), (333, 901)]


def draw(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    """A white image with a black rectangle covering pixels [x1, x2) × [y1, y2)."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    x1, y1, x2, y2 = box
    ImageDraw.Draw(image).rectangle([x1, y1, x2 - 1, y2 - 1], fill=(0, 0, 0))
    return image


def dark_box(image: Image.Image) -> tuple[int, int, int, int]:
    """Pixel extent [x1, x2) × [y1, y2) of the dark pixels."""
    a = np.asarray(image.convert("L")) < 128
    ys, xs = np.nonzero(a)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("name", "override"), [
    ("qwen2_vl", None), ("qwen2_5_vl", None), ("qwen2_5_vl_small", None), ("qwen3_vl", None),
    ("qwen3_vl", "resized_pixels"),
])
def test_perfect_answer_in_each_frame_has_iou_1(name, override, size):
    width, height = size
    px = (width // 5, height // 4, width * 3 // 5, height * 4 // 5)
    image = draw(width, height, px)
    # The released 0-1000 ground truth of that box (LISA's int(coord / W * 1000)).
    sides = (width, height, width, height)
    gt = [int(v / side * 1000) for v, side in zip(px, sides, strict=True)]

    params = PROCESSORS[name]
    processor = Qwen2VLImageProcessorPil(**params)
    grid = processor(images=image, return_tensors="np")["image_grid_thw"][0]
    actual = (int(grid[2]) * params["patch_size"], int(grid[1]) * params["patch_size"])
    assert resized_size(width, height, processor) == actual
    assert resized_size(width, height, params) == actual

    family = name.removesuffix("_small")
    frame = answer_frame(family, override)
    box = box_to_frame(gt, (width, height), actual, frame)

    # The converted box is where the rectangle is in the frame the model sees.
    if frame == "resized_pixels":
        seen = dark_box(image.resize(actual, Image.BICUBIC))
        tol = 2 + max(actual[0] / width, actual[1] / height)
        assert all(isinstance(v, int) for v in box)
    else:
        seen = tuple(v * 1000 / side for v, side in zip(px, sides, strict=True))
        tol = 1000 / min(width, height) + 1
    assert max(abs(a - b) for a, b in zip(box, seen, strict=True)) <= tol, (box, seen)

    det = perfect_answer("detection", {"boxes": [box]})
    assert get_reward("detection_iou")(det, {"boxes": [box]}) == 1.0
    assert get_reward("detection_confidence")(det, {"boxes": [box]}) == 1.0
    ground = perfect_answer("grounding", {"box": box})
    assert get_reward("grounding_iou")(ground, {"box": box}) == 1.0
    assert get_reward("grounding_giou")(ground, {"box": box}) == 2.0


def test_answer_frames_and_override():
    assert answer_frame("qwen2_vl") == "rel1000"
    assert answer_frame("qwen2_5_vl") == "resized_pixels"
    assert answer_frame("qwen3_vl") == "rel1000"
    assert answer_frame("qwen2_vl", override="resized_pixels") == "resized_pixels"
    with pytest.raises(ValueError, match="unknown answer frame 'pixels'"):
        answer_frame("qwen2_vl", override="pixels")
    with pytest.raises(ValueError, match="set the answer frame explicitly"):
        answer_frame("llava")


def test_model_family_from_configs_and_folders(tmp_path, tiny_model):
    assert model_family(tiny_model) == "qwen2_vl"
    assert model_family(Qwen2VLConfig()) == "qwen2_vl"
    assert model_family({"model_type": "qwen2_5_vl"}) == "qwen2_5_vl"
    assert model_family("qwen3_vl") == "qwen3_vl"
    for config, family in [(Qwen2_5_VLConfig(), "qwen2_5_vl"), (Qwen3VLConfig(), "qwen3_vl")]:
        folder = tmp_path / family
        folder.mkdir()
        config.to_json_file(str(folder / "config.json"))
        assert model_family(str(folder)) == family
        assert model_family(folder / "config.json") == family
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError) as info:
        model_family(str(tmp_path / "llava"))
    assert "'llava'" in str(info.value) and "rel1000 or resized_pixels" in str(info.value)
    with pytest.raises(ValueError, match="no config.json"):
        model_family(str(tmp_path))
    # A Hub id that is not in the cache (tests run with HF_HUB_OFFLINE=1): one line, naming the override.
    with pytest.raises(ValueError) as info:
        model_family("vrft-tests/no-such-model")
    assert "vrft-tests/no-such-model" in str(info.value) and "\n" not in str(info.value)
    assert "rel1000 or resized_pixels" in str(info.value)


def test_resized_size_from_a_loaded_processor_and_a_family_name(tiny_model):
    from vrft.rollout.processor import load_processor

    processor = load_processor(tiny_model, max_pixels=112 * 112)
    image = Image.new("RGB", (300, 200), (255, 255, 255))
    grid = processor.image_processor(images=image, return_tensors="np")["image_grid_thw"][0]
    assert resized_size(300, 200, processor) == (int(grid[2]) * 14, int(grid[1]) * 14)
    # 1000 rounds to 36 x 28 = 1008, but 1008^2 is over 28*28*1280 pixels: scaled down, floored to 980.
    assert resized_size(1000, 1000, "qwen2_vl") == (980, 980)
    assert resized_size(1000, 1000, "qwen3_vl") == (992, 992)


def test_boxes_to_frame_rounding_and_errors():
    boxes = [[0, 0, 1000, 1000], [125, 375, 505, 995]]
    assert boxes_to_frame(boxes, (64, 64), None, "rel1000") == boxes
    # x * 56 / 1000 rounded half up: 125 -> 7.0, 375 -> 21.0, 505 -> 28.28 -> 28, 995 -> 55.72 -> 56.
    assert boxes_to_frame(boxes, (64, 64), (56, 56), "resized_pixels") == [[0, 0, 56, 56], [7, 21, 28, 56]]
    assert boxes_to_frame([[250, 250, 750, 750]], (10, 10), (28, 28), "resized_pixels") == [[7, 7, 21, 21]]
    with pytest.raises(ValueError, match="needs the resized image size"):
        boxes_to_frame(boxes, (64, 64), None, "resized_pixels")
    with pytest.raises(ValueError, match="positive"):
        boxes_to_frame(boxes, (0, 64), (56, 56), "resized_pixels")
    with pytest.raises(ValueError, match="'max_pixels'"):
        resized_size(10, 10, {"patch_size": 14, "merge_size": 2, "min_pixels": 1})
