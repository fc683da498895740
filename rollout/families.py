"""Model families: what differs between Qwen2-VL, Qwen2.5-VL and Qwen3-VL, picked from config.json.

One record per family, the only place this knowledge lives: read by the processor loader (fallback
chat template, image patch size), the tiny-model factory, the vLLM weight sync (transformers parameter
names -> the checkpoint names vLLM's `load_weights` takes), and the data layer
(`orchestrator/core/frames.py`: the frame a family answers boxes in, Qwen2-VL and Qwen3-VL in 0-1000
relative coordinates, Qwen2.5-VL in the resized image's pixels; the released image-processor settings
it resizes with when only the family is known). Vision special tokens are the same in all three
(<|vision_start|>, <|image_pad|>, <|vision_end|>, <|video_pad|>), their ids come from each tokenizer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Qwen2-VL / Qwen2.5-VL checkpoints on the Hub keep the pre-transformers-5 layout ("model." is the
# language model, "visual." the vision tower); Qwen3-VL checkpoints were saved in the new layout,
# which is what transformers' named_parameters() gives: no renaming.
_QWEN2_LAYOUT = (("model.language_model.", "model."), ("model.visual.", "visual."), ("lm_head.", "lm_head."))
_SAME_LAYOUT = (("model.language_model.", "model.language_model."), ("model.visual.", "model.visual."),
                ("lm_head.", "lm_head."))


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.json model_type values of the family
    processor_class: str  # the stock transformers processor a Hub checkpoint names
    video_processor_class: str
    patch_size: int  # vision patch side in pixels (merge_size 2 in all three)
    vllm_prefixes: tuple[tuple[str, str], ...]
    default_system: bool  # whether the chat template adds "You are a helpful assistant." itself
    answer_frame: str  # where its box answers are: "rel1000" (0-1000 of each side) or "resized_pixels"
    # the released image processor's resize bounds (preprocessor_config.json), in pixels
    min_pixels: int
    max_pixels: int
    merge_size: int = 2  # vision patches merged per side into one token


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("qwen2_vl", ("qwen2_vl",), "Qwen2VLProcessor", "Qwen2VLVideoProcessor", 14, _QWEN2_LAYOUT, True,
           answer_frame="rel1000", min_pixels=56 * 56, max_pixels=28 * 28 * 1280),
    Family("qwen2_5_vl", ("qwen2_5_vl",), "Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor", 14, _QWEN2_LAYOUT,
           True, answer_frame="resized_pixels", min_pixels=56 * 56, max_pixels=28 * 28 * 1280),
    # Qwen3-VL's processor states shortest_edge 65536 and longest_edge 16777216
    Family("qwen3_vl", ("qwen3_vl", "qwen3_vl_moe"), "Qwen3VLProcessor", "Qwen3VLVideoProcessor", 16,
           _SAME_LAYOUT, False, answer_frame="rel1000", min_pixels=65536, max_pixels=16777216),
)}


def family_for_model_type(model_type: str) -> Family | None:
    return next((f for f in FAMILIES.values() if model_type in f.model_types), None)


def family_of(path: str | Path) -> Family | None:
    """The family of a local model folder from its config.json; None when unknown or not local."""
    config = Path(str(path)).expanduser() / "config.json"
    if not config.is_file():
        return None
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError):
        return None
    return family_for_model_type(str(model_type))


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) as Qwen2-VL's image processor resizes them (transformers' `smart_resize`,
    the same function for all three families): sides rounded to multiples of `factor`, area scaled
    into [min_pixels, max_pixels] keeping the aspect ratio."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of a {width}x{height} image is over 200, which the processor refuses")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


# Each family's released image processor settings, used when a caller has only the family name.
PROCESSOR_DEFAULTS: dict[str, dict[str, int]] = {
    f.name: {"patch_size": f.patch_size, "merge_size": f.merge_size, "min_pixels": f.min_pixels,
             "max_pixels": f.max_pixels} for f in FAMILIES.values()}


def processor_params(processor_or_params: Any) -> dict[str, int]:
    """patch_size, merge_size, min_pixels, max_pixels from a processor (its `image_processor`), an
    image processor, a dict of those four, or a family name (its released defaults)."""
    if isinstance(processor_or_params, str):
        if processor_or_params not in PROCESSOR_DEFAULTS:
            raise ValueError(f"unknown model family {processor_or_params!r}; pass the processor instead")
        return dict(PROCESSOR_DEFAULTS[processor_or_params])
    if isinstance(processor_or_params, dict):
        params = processor_or_params
    else:
        ip = getattr(processor_or_params, "image_processor", processor_or_params)
        size = getattr(ip, "size", None) or {}
        get = size.get if isinstance(size, dict) else lambda k, d=None: getattr(size, k, d)
        params = {
            "patch_size": getattr(ip, "patch_size", None),
            "merge_size": getattr(ip, "merge_size", None),
            "min_pixels": get("shortest_edge") or getattr(ip, "min_pixels", None),
            "max_pixels": get("longest_edge") or getattr(ip, "max_pixels", None),
        }
    out = {}
    for key in ("patch_size", "merge_size", "min_pixels", "max_pixels"):
        value = params.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"image processor setting {key!r} must be a positive integer, got {value!r}")
        out[key] = value
    return out
