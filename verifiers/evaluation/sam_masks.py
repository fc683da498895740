"""Box-prompted SAM masks for the LISA gIoU / cIoU metrics.

It lives with the metric, not with the driver: the paper's gIoU / cIoU are defined on SAM's mask of
the predicted box, so which box SAM is given (``paper_box``: the script's truncation), which of its
outputs is kept and how the mask is stored are the metric's protocol, as much as ``mask_iou.py``'s
sums are. The driver (vrft.orchestrator.evaluation) only decodes the images and calls ``add_masks``.
torch and transformers are imported inside the functions that need them, so scoring alone does not.

Visual-RFT scores reasoning grounding on LISA twice: box IoU of the predicted box (mIoU), and mask
IoU after turning that box into a mask with SAM ViT-H (`lisa_evaluation/box2mask.py`), scored by
`mask_iou.py` as gIoU (mean per-image mask IoU) and cIoU (ΣI/ΣU). This module is the box2mask step,
with the transformers port of SAM (`SamModel` + `SamProcessor`, e.g. a local copy of
`facebook/sam-vit-huge`) instead of the `segment_anything` package, so the project needs no extra
dependency and no remote code. Its output goes into prediction records as COCO RLE under ``"mask"``,
which the LISA scorer (vrft.verifiers.evaluation.benchmarks) feeds to `item_scores.mask_metrics`.

What box2mask.py does, and what is kept here (read from a public copy of the release,
wangzhifengharrison/visual_rft_zw@ca4e501; docs/sources.md V6 names the file only):
- ``SamPredictor.predict_torch(boxes=..., multimask_output=False)``: one box per image and SAM's
  single-mask output (mask token 0), not the best of the three multimask outputs. That is the default
  here (``multimask=False``); ``multimask=True`` picks the multimask output with the highest predicted
  IoU, as SAM's own demo does, and is not the paper's protocol.
- The box is the model's 0–1000 box scaled by ``int(v / 1000 * W)`` (truncation): `paper_box`.
- Image: longest side resized to 1024 with PIL bilinear, ImageNet-normalised, zero-padded to
  1024×1024; masks upsampled to 1024, cropped, upsampled to the original size, thresholded at logit 0.
  transformers' SAM processor does the same; the PIL backend is loaded explicitly because
  SamPredictor resizes through PIL too, so results do not depend on whether torchvision is installed.
  Expect small pixel differences from the original package (float rounding), not a different protocol.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vrft.verifiers.evaluation.item_scores import lisa_box, mask_to_rle

Box = Sequence[float]


def paper_box(completion: str, width: int, height: int) -> list[int] | None:
    """box2mask.py's prompt box in pixels: the first ``(x1,y1),(x2,y2)`` of the completion divided by
    1000 (as the inference script stores it), then ``scale_bbox``'s ``int(x * W)``; None without a box."""
    found = lisa_box(completion)
    if found is None:
        return None
    x1, y1, x2, y2 = (v / 1000 for v in found)
    try:
        return [int(x1 * width), int(y1 * height), int(x2 * width), int(y2 * height)]
    except (OverflowError, ValueError):  # absurd digits: inf * W; the script would fail this item too
        return None


def _resolve_dtype(dtype: Any) -> Any:
    """float32 unless asked: box2mask.py runs SAM in float32, and bf16 moves mask borders."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown torch dtype {dtype!r}")
        return resolved
    return dtype


def _check_box(k: int, box: Box) -> list[float]:
    """Four finite pixel coordinates; anything else is a caller bug, better loud than a random mask."""
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError) as e:
        raise ValueError(f"box {k}: expected [x1, y1, x2, y2] in pixels, got {box!r}") from e
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"box {k}: expected 4 finite pixel coordinates, got {box!r}")
    return values


class BoxMasker:
    """A SAM checkpoint (transformers format) that turns one pixel box per image into a boolean mask.

    ``path``: a folder with the model and its processor config, loaded offline as any local folder.
    ``device``: defaults to CUDA when available. ``dtype``: torch dtype or its name, default float32.
    ``multimask``: False is the paper's single-mask output; True takes the best of SAM's three masks
    by predicted IoU. ``batch_size``: images per forward pass (ViT-H at 1024² is ~2 GB of activations
    per image in fp32, so keep it modest on small GPUs).
    """

    def __init__(self, path: str | Path, device: Any = None, dtype: Any = None, *, multimask: bool = False,
                 batch_size: int = 8):
        import torch
        from transformers import SamImageProcessorPil, SamModel, SamProcessor

        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.device = torch.device(device if device is not None else
                                   ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = _resolve_dtype(dtype)
        self.multimask = multimask
        self.batch_size = batch_size
        self.model = SamModel.from_pretrained(str(path), dtype=self.dtype).to(self.device).eval()
        self.processor = SamProcessor(image_processor=SamImageProcessorPil.from_pretrained(str(path)))

    def masks(self, images: Sequence[Any], boxes: Sequence[Box | None]) -> list[np.ndarray]:
        """One boolean H×W mask per image (its original size); a None box gives an all-False mask,
        which scores as the missing prediction it stands for (IoU 0, its ground truth still in ΣU)."""
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} boxes")
        out: list[np.ndarray | None] = [None] * len(images)
        todo: list[tuple[int, Any, list[float]]] = []
        for k, (image, box) in enumerate(zip(images, boxes, strict=True)):
            if box is None:
                out[k] = np.zeros((image.height, image.width), dtype=bool)
            else:
                todo.append((k, image.convert("RGB"), _check_box(k, box)))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            for (k, _, _), mask in zip(chunk, self._run([im for _, im, _ in chunk], [b for _, _, b in chunk]),
                                       strict=True):
                out[k] = mask
        return out  # type: ignore[return-value]  # every slot is filled above

    def _run(self, images: list[Any], boxes: list[list[float]]) -> list[np.ndarray]:
        """One forward pass over a batch; each image gets its own single box (SAM's point batch of 1)."""
        import torch

        inputs = self.processor(images=images, input_boxes=[[b] for b in boxes], return_tensors="pt")
        with torch.inference_mode():
            out = self.model(
                pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
                # float32 boxes: the prompt encoder normalises them before casting to the model's dtype,
                # so a bf16 model does not round a 1024-px coordinate to a multiple of 8 first
                input_boxes=inputs["input_boxes"].to(self.device, torch.float32),
                multimask_output=self.multimask,
            )
        low_res = out.pred_masks[:, 0]  # (batch, masks, h, w): the one box per image
        pick = out.iou_scores[:, 0].argmax(-1) if self.multimask else torch.zeros(len(images), dtype=torch.long)
        chosen = [low_res[i, int(pick[i])][None, None].float().cpu() for i in range(len(images))]
        full = self.processor.image_processor.post_process_masks(
            chosen, inputs["original_sizes"], inputs["reshaped_input_sizes"])
        return [m[0, 0].numpy().astype(bool) for m in full]


def add_masks(records: Sequence[dict[str, Any]], images: Sequence[Any], boxes: Sequence[Box | None],
              masker: BoxMasker) -> Sequence[dict[str, Any]]:
    """Store each image's box-prompted mask in its record as compressed COCO RLE under ``"mask"`` (the
    form `_score_lisa` reads back); records are updated in place and returned. A None box stores an
    empty mask, so every record says explicitly what was scored."""
    if not len(records) == len(images) == len(boxes):
        raise ValueError(f"{len(records)} records, {len(images)} images and {len(boxes)} boxes differ in number")
    for record, mask in zip(records, masker.masks(images, boxes), strict=True):
        record["mask"] = mask_to_rle(mask)
    return records
