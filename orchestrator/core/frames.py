"""Coordinate frames per model family: the frame a model answers boxes in, and the ground truth
converted into it.

Visual-RFT's data stores boxes in the 0–1000 frame (Qwen2-VL's convention: x/W·1000, y/H·1000).
A reward compares a prediction with the ground truth in one frame, so the ground truth must be in the
frame the policy answers in:

- Qwen2-VL answers in `rel1000`: the stored boxes as they are.
- Qwen2.5-VL answers in `resized_pixels`: absolute pixels of the image as its processor resized it
  (`smart_resize`: each side rounded to a multiple of patch_size × merge_size, the area kept within
  [min_pixels, max_pixels]). The same image at another max_pixels is another frame, so the sizes come
  from the run's own processor settings.
- Qwen3-VL answers in `rel1000` again. Its model card and cookbooks say so ("changed from the
  absolute coordinates used in Qwen2.5-VL to relative coordinates ranging from 0 to 1000",
  QwenLM/Qwen3-VL issues #1485, #1741); the project issue assumed pixels, and `answer_frame(...,
  override="resized_pixels")` gives that. Its processor has patch size 16 (factor 32).

A family this module does not know is an error that names the override, never a silent guess.

Known limit, outside this module: `verifiers` detection rewards reject any coordinate above 1000 (the
0–1000 frame's bound), so in the `resized_pixels` frame a resized side over 1000 pixels cannot be
scored until those rewards take the frame's bound. A box that rounds to zero area in a small resized
image cannot be matched either; `vrft check-data` is where both show.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vrft.rollout.families import (  # noqa: F401 (PROCESSOR_DEFAULTS: re-exported)
    FAMILIES,
    PROCESSOR_DEFAULTS,
    processor_params,
    smart_resize,
)

FRAMES = ("rel1000", "resized_pixels")
# Views of the one family record (rollout/families.py), keyed as this module's callers ask.
FAMILY_FRAMES = {f.name: f.answer_frame for f in FAMILIES.values()}
_MODEL_TYPES = {model_type: f.name for f in FAMILIES.values() for model_type in f.model_types}  # config.json's
_OVERRIDE_HINT = "set the answer frame explicitly (rel1000 or resized_pixels)"


def _model_type(source: Any) -> tuple[str | None, str]:
    """(model_type, where it was read) from a config object, a dict, a folder, a config.json path, or
    a Hub id (read through the Hugging Face cache)."""
    if isinstance(source, dict):
        return source.get("model_type"), "the config"
    if hasattr(source, "model_type"):
        return getattr(source, "model_type", None), type(source).__name__
    path = Path(str(source)).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        try:
            return json.loads(path.read_text()).get("model_type"), str(path)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read model_type from {path}: {e}") from None
    if Path(str(source)).expanduser().exists():
        raise ValueError(f"no config.json in {source}; {_OVERRIDE_HINT}")
    from transformers.utils import cached_file  # a Hub id: its config.json, cached or fetched

    try:
        file = cached_file(str(source), "config.json", _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"cannot read config.json of model {source} ({first}); {_OVERRIDE_HINT}") from None
    if file is None:
        raise ValueError(f"no config.json for model {source}; {_OVERRIDE_HINT}")
    return json.loads(Path(file).read_text()).get("model_type"), str(source)


def model_family(model_path_or_config: Any) -> str:
    """`qwen2_vl`, `qwen2_5_vl` or `qwen3_vl`, from the model's config.json `model_type`.

    Accepts a model folder, a config.json path, a Hub id, a transformers config or a plain dict; a
    family name itself passes through.
    """
    if isinstance(model_path_or_config, str) and model_path_or_config in FAMILY_FRAMES:
        return model_path_or_config
    model_type, where = _model_type(model_path_or_config)
    family = _MODEL_TYPES.get(str(model_type))
    if family is None:
        raise ValueError(f"unknown model family {model_type!r} in {where}; {_OVERRIDE_HINT}")
    return family


def answer_frame(family: str, override: str | None = None) -> str:
    """The frame `family` answers boxes in (`rel1000` or `resized_pixels`); `override` wins."""
    if override is not None:
        if override not in FRAMES:
            raise ValueError(f"unknown answer frame {override!r} (known: {', '.join(FRAMES)})")
        return override
    try:
        return FAMILY_FRAMES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; {_OVERRIDE_HINT}") from None


def resized_size(width: int, height: int, processor_or_params: Any) -> tuple[int, int]:
    """(width, height) of a `width`×`height` image after the processor's resize: the pixel frame a
    Qwen2.5-VL answer refers to."""
    p = processor_params(processor_or_params)
    factor = p["patch_size"] * p["merge_size"]
    h, w = smart_resize(int(height), int(width), factor, p["min_pixels"], p["max_pixels"])
    return w, h


def boxes_to_frame(
    boxes_1000: list, image_size: tuple[int, int], resized_size: tuple[int, int] | None, frame: str
) -> list[list[float | int]]:
    """Ground-truth xyxy boxes from the 0–1000 frame into `frame`.

    `rel1000`: returned as they are (copied). `resized_pixels`: x·W'/1000 and y·H'/1000 for the resized
    size (W', H'), rounded half up to integers and clamped to [0, W'] × [0, H']. Integers because the
    models answer integers and the LISA reward reads only digits; the rounding moves a side by at most
    half a pixel, which a perfect answer reproduces exactly, since it is built from the converted box.
    `image_size` (W, H) of the original image is checked but not otherwise needed: the resize maps the
    whole image onto (W', H'), so relative coordinates carry over.
    """
    if frame not in FRAMES:
        raise ValueError(f"unknown answer frame {frame!r} (known: {', '.join(FRAMES)})")
    w0, h0 = image_size
    if w0 <= 0 or h0 <= 0:
        raise ValueError(f"image size must be positive, got {w0}x{h0}")
    if frame == "rel1000":
        return [list(b) for b in boxes_1000]
    if resized_size is None:
        raise ValueError("the resized_pixels frame needs the resized image size")
    rw, rh = resized_size
    out = []
    for b in boxes_1000:
        x1, y1, x2, y2 = b
        out.append([_scale(x1, rw), _scale(y1, rh), _scale(x2, rw), _scale(y2, rh)])
    return out


def _scale(v: float, side: int) -> int:
    return min(side, max(0, math.floor(v * side / 1000 + 0.5)))


def box_to_frame(
    box_1000: list, image_size: tuple[int, int], resized: tuple[int, int] | None, frame: str
) -> list[float | int]:
    """One box (a grounding ground truth) into `frame`; see `boxes_to_frame`."""
    return boxes_to_frame([box_1000], image_size, resized, frame)[0]
