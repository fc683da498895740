"""Boxes seen on the image: a row's ground truth and a completion's predictions, read in the model's
answer frame and drawn onto the picture the model was shown.

Ground truth and predictions share one frame (orchestrator/core/frames.py): `rel1000` (Qwen2-VL, Qwen3-VL:
x/W·1000) or `resized_pixels` (Qwen2.5-VL: pixels of the image as its processor resized it). Drawing
maps that frame onto the picture by its extent (1000×1000, or the resized width×height), so a box
lands where the model meant it whatever size the picture is shown at.

Which reader a task uses is its record's (orchestrator/core/tasks.py: `gt_boxes`, `predicted_boxes`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from vrft.orchestrator.core.frames import resized_size
from vrft.verifiers.rewards_detection import FRAME_MAX, parse_detections
from vrft.verifiers.rewards_grounding import parse_grounding_box

GT_COLOUR = (34, 197, 94)  # green: the ground truth
PRED_COLOUR = (239, 68, 68)  # red: the model's boxes


@dataclass
class Box:
    x1: float
    y1: float
    x2: float
    y2: float
    confidence: float | None = None  # detection answers carry one; grounding answers do not

    def as_list(self) -> list[float]:
        out = [float(self.x1), float(self.y1), float(self.x2), float(self.y2)]
        return out if self.confidence is None else [*out, float(self.confidence)]


def frame_extent(frame: str, image_size: tuple[int, int], processor=None) -> tuple[float, float]:
    """(width, height) of the answer frame for an image of `image_size`: what x2=width means."""
    if frame == "resized_pixels":
        return tuple(float(v) for v in resized_size(image_size[0], image_size[1], processor))
    return 1000.0, 1000.0


def detection_truth_boxes(ground_truth: dict) -> list[Box]:
    """A detection row's boxes (`{"boxes": [...]}`)."""
    return [Box(*b[:4]) for b in ground_truth.get("boxes", [])]


def grounding_truth_boxes(ground_truth: dict) -> list[Box] | None:
    """A grounding row's one box (`{"box": [...]}`); None when the row has none."""
    box = ground_truth.get("box")
    return None if box is None else [Box(*box[:4])]


def detection_answer_boxes(completion: str, frame: str = "rel1000") -> list[Box]:
    """The boxes a detection completion names, parsed as its rewards parse them (Visual-RFT's
    `[{'Position': ..., 'Confidence': ...}]`, docs/sources.md V3); [] when none parse."""
    # The detection rewards' coordinate bound: 1000, or the loose pixel bound (tasks._in_frame).
    parsed = parse_detections(completion, FRAME_MAX["pixels" if frame == "resized_pixels" else "rel1000"])
    return [Box(x1, y1, x2, y2, c) for c, x1, y1, x2, y2 in (parsed[0] if parsed else [])]


def grounding_answer_boxes(completion: str, frame: str = "rel1000") -> list[Box]:
    """The box a grounding completion names (`(x1,y1),(x2,y2)`, docs/sources.md V3); [] when none parses."""
    box = parse_grounding_box(completion)
    return [] if box is None else [Box(*box)]


def area_share(box: Box, extent: tuple[float, float]) -> float:
    """The share of the image a box covers (clipped to the frame)."""
    w, h = extent
    bw = max(0.0, min(box.x2, w) - max(box.x1, 0.0))
    bh = max(0.0, min(box.y2, h) - max(box.y1, 0.0))
    return bw * bh / (w * h) if w > 0 and h > 0 else 0.0


def jpeg(image: Image.Image, quality: int = 80) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def thumbnail(image: Image.Image, max_side: int) -> bytes:
    """A JPEG no larger than `max_side` on its longer side (never enlarged)."""
    small = image.convert("RGB")
    small.thumbnail((max_side, max_side))
    return jpeg(small)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_boxes(image: Image.Image, extent: tuple[float, float], gt: list[Box], pred: list[Box],
               side: int) -> Image.Image:
    """The image scaled so its longer side is `side` (tiny synthetic images are enlarged, or a 1px
    line would cover them), the ground truth in green and the predictions in red, each prediction
    labelled with its confidence."""
    w0, h0 = image.size
    scale = side / max(w0, h0)
    size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
    canvas = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    sx, sy = size[0] / extent[0], size[1] / extent[1]
    width = max(2, side // 160)
    font = _font(max(10, side // 24))
    for boxes, colour in ((gt, GT_COLOUR), (pred, PRED_COLOUR)):
        for b in boxes:
            x1, y1 = b.x1 * sx, b.y1 * sy
            x2, y2 = max(x1, b.x2 * sx), max(y1, b.y2 * sy)
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
            if b.confidence is not None:
                label = f"{b.confidence:.2f}"
                left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
                tw, th = right - left, bottom - top
                ty = y1 - th - 4 if y1 - th - 4 >= 0 else y1  # above the box, inside it at the top edge
                draw.rectangle([x1, ty, x1 + tw + 4, ty + th + 4], fill=colour)
                draw.text((x1 + 2 - left, ty + 2 - top), label, fill=(255, 255, 255), font=font)
    return canvas


def wandb_boxes(gt: list[Box], pred: list[Box], extent: tuple[float, float]) -> dict:
    """`wandb.Image(boxes=...)`: two box groups (toggled apart in wandb's overlay), coordinates as
    fractions of the image (wandb's default domain), so they need no pixel size."""
    def entry(b: Box, class_id: int) -> dict:
        w, h = extent
        item = {"position": {"minX": b.x1 / w, "maxX": b.x2 / w, "minY": b.y1 / h, "maxY": b.y2 / h},
                "class_id": class_id}
        if b.confidence is not None:
            item["scores"] = {"confidence": float(b.confidence)}
            item["box_caption"] = f"{b.confidence:.2f}"
        return item

    labels = {0: "ground truth", 1: "prediction"}
    return {"ground_truth": {"box_data": [entry(b, 0) for b in gt], "class_labels": labels},
            "predictions": {"box_data": [entry(b, 1) for b in pred], "class_labels": labels}}
