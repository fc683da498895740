"""The papers' evaluation metrics (docs/sources.md V6, R7). All return fractions in [0, 1]; the papers
print them ×100.

- Detection: COCO-style AP through ``pycocotools.COCOeval("bbox")``. Predictions in the 0–1000 frame
  are converted to absolute xywh with each image's size; per-class AP is
  ``precision[:, :, k, 0, -1]`` (IoU .50:.95, all areas, maxDets 100) averaged over its valid entries,
  and the reported mAP is the mean over the chosen classes (Visual-RFT's notebook).
- Classification accuracy: Visual-RFT's test (``<answer>`` content, spaces/underscores removed,
  lower-cased, either contains the other; no tag counts as wrong).
- Grounding mIoU: mean IoU of the first ``(x1,y1),(x2,y2)`` (LISA evaluation; failure is 0).
- Counting / math accuracy: exact match of the ``<answer>`` content, or math-verify equivalence
  (Reason-RFT's ``cal_score_benchmarks``).
- TRANCE: mean partial-credit score.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

from vrft.verifiers._text import extract_answer, gt_answer
from vrft.verifiers.registry import get_reward
from vrft.verifiers.rewards_detection import parse_detections

# ---- detection: COCO mAP -------------------------------------------------------------------------


def box_1000_to_xywh(box: Sequence[float], width: float, height: float) -> list[float]:
    """xyxy in the 0–1000 frame → absolute COCO ``[x, y, w, h]`` for an image of ``width × height``."""
    x1, y1, x2, y2 = box
    sx, sy = width / 1000.0, height / 1000.0
    return [x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy]


def coco_gt_from_boxes(
    images: Iterable[dict[str, Any]],
    annotations: Iterable[dict[str, Any]],
    categories: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    """A COCO ground-truth dict from annotations whose ``box`` is xyxy in the 0–1000 frame.

    ``images``: ``{"id", "width", "height"}``; ``annotations``: ``{"image_id", "category_id", "box"}``
    (optional ``iscrowd``); ``categories``: ``{"id", "name"}``.
    """
    imgs = [dict(im) for im in images]
    size = {im["id"]: (im["width"], im["height"]) for im in imgs}
    anns = []
    for i, a in enumerate(annotations, start=1):
        w, h = size[a["image_id"]]
        xywh = box_1000_to_xywh(a["box"], w, h)
        anns.append({"id": i, "image_id": a["image_id"], "category_id": a["category_id"], "bbox": xywh,
                     "area": xywh[2] * xywh[3], "iscrowd": int(a.get("iscrowd", 0))})
    return {"images": imgs, "annotations": anns, "categories": [dict(c) for c in categories]}


def detections_from_completion(completion: str, image_id: int, category_id: int) -> list[dict[str, Any]]:
    """COCO-style predictions (``box`` in 0–1000, ``score`` = Confidence) parsed from one completion
    answering "detect all <category>" (the paper queries one category per prompt)."""
    parsed = parse_detections(completion)
    if parsed is None:
        return []
    return [{"image_id": image_id, "category_id": category_id, "box": [x1, y1, x2, y2], "score": c}
            for c, x1, y1, x2, y2 in parsed[0]]


def _load_gt(coco_gt: Any) -> Any:
    from pycocotools.coco import COCO

    if isinstance(coco_gt, COCO):
        return coco_gt
    gt = COCO()
    gt.dataset = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in coco_gt.items()}
    gt.dataset.setdefault("info", {})
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_map(
    coco_gt: Any,
    predictions: Sequence[dict[str, Any]],
    classes: Sequence[int | str] | None = None,
) -> dict[str, Any]:
    """COCO bbox AP per class and its mean over ``classes``.

    ``coco_gt``: a ``pycocotools.coco.COCO`` or a COCO-format dict (absolute xywh boxes, as in
    ``instances_val2017.json``; see ``coco_gt_from_boxes`` for 0–1000 data). ``predictions``:
    ``{"image_id", "category_id", "score"}`` plus ``"box"`` (xyxy, 0–1000, converted with the image's
    size) or ``"bbox"`` (absolute xywh, used as is). ``classes``: category ids or names to average
    over (default: every category with ground truth).

    Returns ``{"mAP", "AP50", "per_class": {name: AP}, "per_class_AP50": {name: AP50}}``; a class
    without ground truth has AP NaN and is left out of the means.
    """
    import numpy as np
    from pycocotools.cocoeval import COCOeval

    gt = _load_gt(coco_gt)
    sizes = {i: (im["width"], im["height"]) for i, im in gt.imgs.items()}
    names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    by_name = {v: k for k, v in names.items()}
    results = []
    for p in predictions:
        if p["image_id"] not in sizes:
            raise ValueError(f"prediction for image {p['image_id']!r}, which the ground truth does not have")
        if "bbox" in p:
            xywh = list(p["bbox"])
        else:
            xywh = box_1000_to_xywh(p["box"], *sizes[p["image_id"]])
        results.append({"image_id": p["image_id"], "category_id": p["category_id"], "bbox": xywh,
                        "score": float(p["score"])})

    cat_ids = sorted(names)
    if classes is None:
        wanted = sorted({a["category_id"] for a in gt.dataset["annotations"]})
    else:
        wanted = [by_name[c] if isinstance(c, str) else c for c in classes]
    per_class: dict[str, float] = {}
    per_class50: dict[str, float] = {}
    if results:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            ev = COCOeval(gt, gt.loadRes(results), "bbox")
            ev.params.catIds = cat_ids
            ev.evaluate()
            ev.accumulate()
        precision = ev.eval["precision"]  # [T iou, R recall, K class, A area, M maxDets]
        for cid in wanted:
            k = cat_ids.index(cid)
            pr = precision[:, :, k, 0, -1]
            pr50 = precision[0, :, k, 0, -1]
            per_class[names[cid]] = float(np.mean(pr[pr > -1])) if (pr > -1).any() else math.nan
            per_class50[names[cid]] = float(np.mean(pr50[pr50 > -1])) if (pr50 > -1).any() else math.nan
    else:  # loadRes cannot take an empty list; no detections means AP 0 wherever there is ground truth
        has_gt = {a["category_id"] for a in gt.dataset["annotations"]}
        for cid in wanted:
            per_class[names[cid]] = per_class50[names[cid]] = 0.0 if cid in has_gt else math.nan

    def mean(d: dict[str, float]) -> float:
        vals = [v for v in d.values() if not math.isnan(v)]
        return sum(vals) / len(vals) if vals else math.nan

    return {"mAP": mean(per_class), "AP50": mean(per_class50), "per_class": per_class,
            "per_class_AP50": per_class50}


# ---- the other tasks ------------------------------------------------------------------------------


def mean_reward(name: str, completions: Sequence[str], ground_truths: Sequence[dict], **options: Any) -> float:
    """Mean of a registered reward over a data set (0.0 for an empty one)."""
    if len(completions) != len(ground_truths):
        raise ValueError("completions and ground truths differ in length")
    if not completions:
        return 0.0
    fn = get_reward(name, **options)
    return sum(fn(c, g) for c, g in zip(completions, ground_truths, strict=True)) / len(completions)


def classification_accuracy(completions: Sequence[str], labels: Sequence[str]) -> float:
    """Visual-RFT's classification accuracy (``Qwen2_VL_classification_infere.py``): the ``<answer>``
    content (no DOTALL; no tag is wrong) and the label, normalized, either containing the other."""
    if len(completions) != len(labels):
        raise ValueError("completions and labels differ in length")
    if not completions:
        return 0.0
    right = 0
    for c, label in zip(completions, labels, strict=True):
        ans = extract_answer(c, dotall=False) if isinstance(c, str) else None
        if ans is None:
            continue
        a = ans.replace(" ", "").replace("_", "").lower()
        g = gt_answer({"answer": label}).replace(" ", "").replace("_", "").lower()
        right += g in a or a in g
    return right / len(completions)


def grounding_miou(completions: Sequence[str], boxes: Sequence[Sequence[float]]) -> float:
    """LISA mIoU: mean IoU of the first predicted box with the ground-truth box (0–1000 xyxy)."""
    return mean_reward("grounding_iou", completions, [{"box": list(b)} for b in boxes])


def answer_accuracy(completions: Sequence[str], answers: Sequence[str]) -> float:
    """Reason-RFT counting / structure accuracy: exact ``<answer>`` match or math-verify equivalence."""
    return mean_reward("math", completions, [{"answer": a} for a in answers])


counting_accuracy = answer_accuracy
math_accuracy = answer_accuracy


def trance_score(completions: Sequence[str], answers: Sequence[str]) -> float:
    """Reason-RFT spatial-transformation score: mean partial credit (×1 / ×.5 / ×.5 / ×.25)."""
    return mean_reward("spatial_transform", completions, [{"answer": a} for a in answers], mode="partial")
