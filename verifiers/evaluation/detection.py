"""Detection benchmarks: which (image, category) pairs are queried, and AP averaged over class subsets,
for COCO (Visual-RFT Tab. 3 / Tab. 7) and LVIS's federated protocol (Tab. 4 / Tab. 8).

**Queries.** The paper asks one question per (image, category): "detect all <category>". Which pairs
are asked is the query protocol (docs/sources.md V6):

- ``"existence_map"``: the pairs listed in an existence map ``{image_id: [category names]}``, which in
  the paper is the *baseline model's own* answer to "which of these classes are in the image"
  (``exist_map_coco_Qwen2_vl_{2B,7B}_baseline.json``). The paper's numbers use this protocol.
- ``"gt_categories"``: the categories with ground truth in the image. It never asks about an absent
  class, so it cannot produce false positives there and scores higher; it is what one can run without
  a baseline pass.

Only the benchmark's own classes are queried (the paper's scripts filter the map by ``selected_cate``).
Ground truth of a pair that was not queried still counts (as misses): scoring runs over every image
of the ground truth, as the paper's ``COCOeval`` over the whole val set does.

**AP.** ``pycocotools.COCOeval("bbox")``; per-class AP is ``precision[:, :, k, 0, -1]`` (IoU .50:.95,
area "all", the last maxDets) averaged over its valid entries (NaN for a class without ground truth).
A subset's mAP is, under ``nan="propagate"`` (`--scoring paper`), the notebook's sum of its classes'
APs over their number, so one class without ground truth makes it NaN; under ``nan="skip"``
(`--scoring strict`) the mean of the classes that have ground truth. Only
the benchmark's classes and the "all" area range are evaluated: COCOeval scores each (image, class)
and each area range independently, so the numbers are the same and the run is faster.

**LVIS** (the official rules of ``lvis.LVISEval``, re-implemented on pycocotools because the only
``lvis`` release on PyPI, 0.5.3, calls ``np.float``, which numpy ≥ 1.24 removed; the tests check these
numbers against ``LVISEval`` itself): at most 300 detections per image (highest scores, over all
classes), then a detection only counts for an image whose positive annotations or
``neg_category_ids`` contain its class, and an unmatched detection of a class in the image's
``not_exhaustive_category_ids`` is ignored instead of counted as a false positive.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from typing import Any

from vrft.verifiers.rewards_detection import parse_detections

PROTOCOLS = ("existence_map", "gt_categories")
LVIS_MAX_DETS = 300
COCO_MAX_DETS = 100


def query_id(image_id: Any, category: str) -> str:
    """The id of one detection query (and of its prediction record): ``"<image_id>:<category name>"``."""
    return f"{image_id}:{category}"


def load_ground_truth(gt: Any) -> Any:
    """A ``pycocotools.coco.COCO`` from a COCO / LVIS ground-truth dict, a path to its JSON, or a COCO
    (returned as is). Dicts are copied; annotations get ``iscrowd`` 0 and ``area`` w·h when absent
    (LVIS has neither crowd flags nor needs them, but COCOeval reads both)."""
    from pycocotools.coco import COCO

    if isinstance(gt, COCO):
        return gt
    if isinstance(gt, (str, PathLike)):
        with open(gt, encoding="utf-8") as f:
            gt = json.load(f)
    if not isinstance(gt, Mapping) or not all(k in gt for k in ("images", "annotations", "categories")):
        raise ValueError("detection ground truth must be a COCO/LVIS dict with images, annotations, categories")
    anns = []
    for a in gt["annotations"]:
        a = dict(a)
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
        anns.append(a)
    coco = COCO()
    coco.dataset = {**gt, "annotations": anns, "images": [dict(i) for i in gt["images"]],
                    "categories": [dict(c) for c in gt["categories"]]}
    coco.dataset.setdefault("info", {})
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def category_ids(gt: Any, classes: Iterable[str]) -> dict[str, int]:
    """``{name: id}`` for ``classes`` in the ground truth's category table (a missing one raises)."""
    by_name = {c["name"]: c["id"] for c in gt.dataset["categories"]}
    out = {}
    for name in classes:
        if name not in by_name:
            raise ValueError(f"the ground truth has no category {name!r}")
        out[name] = by_name[name]
    return out


def detection_queries(
    gt: Any,
    classes: Sequence[str],
    protocol: str,
    existence_map: Mapping[Any, Sequence[str]] | None = None,
) -> dict[str, tuple[int, str]]:
    """``{query id: (image_id, category name)}`` for every image of ``gt`` (a COCO from
    ``load_ground_truth``), in image then class order, under ``protocol`` (see the module docstring).

    The existence map is keyed by image id (int or its string, as in the paper's JSON files); it must
    have an entry for every evaluated image and name only categories the ground truth knows.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown query protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if (existence_map is None) == (protocol == "existence_map"):
        raise ValueError("the existence_map protocol needs an existence map, and only it takes one")
    names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    known = set(names.values())
    wanted = list(dict.fromkeys(classes))
    category_ids(gt, wanted)
    emap = {str(k): v for k, v in (existence_map or {}).items()}
    queries: dict[str, tuple[int, str]] = {}
    for img in sorted(gt.imgs):
        if protocol == "gt_categories":
            present = {names[a["category_id"]] for a in gt.imgToAnns.get(img, [])}
        else:
            listed = emap.get(str(img))
            if listed is None:
                raise ValueError(f"the existence map has no entry for image {img}")
            for name in listed:
                if name not in known:
                    raise ValueError(f"the existence map names category {name!r} (image {img}), "
                                     "which the ground truth does not have")
            present = set(listed)
        for name in wanted:
            if name in present:
                queries[query_id(img, name)] = (img, name)
    return queries


def read_detections(completion: str, scoring: str = "strict",
                    losses: dict[str, int] | None = None) -> list[tuple[float, float, float, float, float]] | None:
    """``(confidence, x1, y1, x2, y2)`` in the 0–1000 frame read from one detection answer, or None
    when it does not parse.

    ``scoring="strict"``: the training reward's parser. ``"paper"``: the released inference script's
    post-processing (``vrft.verifiers.evaluation.script_readings.parse_detections_script``); a detection whose
    Confidence is not a number is dropped (the script's evaluation would crash on it). ``losses``,
    when given, counts what the paper reading lost (answers unparsed, lost whole, cut; items lost
    after an error; unscorable confidences)."""
    if scoring == "strict":
        parsed = parse_detections(completion)
        return None if parsed is None else parsed[0]
    from vrft.verifiers.evaluation.script_readings import parse_detections_script

    read = parse_detections_script(completion)
    found = [d for d in read.detections if isinstance(d[0], (int, float))]
    if losses is not None:
        losses["answers_unparsed"] += not read.parsed
        losses["answers_lost_whole"] += read.lost_whole
        losses["answers_cut"] += read.stopped_at is not None
        losses["items_lost_after_error"] += read.lost_after_stop
        losses["unscorable_scores"] += len(read.detections) - len(found)
    return found if read.parsed else None


def detections_from_completion(completion: str, image_id: Any, category_id: int, *, scoring: str = "strict",
                               losses: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """COCO-style detections (``box`` in the 0–1000 frame, ``score`` = Confidence) from one completion
    answering "detect all <category>" (``read_detections``; none when it does not parse). The paper
    asks one category per prompt, so every box is of ``category_id``."""
    return [{"image_id": image_id, "category_id": category_id, "box": [x1, y1, x2, y2], "score": c}
            for c, x1, y1, x2, y2 in read_detections(completion, scoring, losses) or []]


def boxes_to_results(gt: Any, detections: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """COCO result dicts (absolute xywh) from detections with ``image_id``, ``category_id``, ``score``
    and ``box`` (xyxy in the 0–1000 frame, scaled by the image's width and height, as the paper's
    ``trans_bbox``) or ``bbox`` (absolute xywh, used as is)."""
    out = []
    for d in detections:
        img = gt.imgs.get(d["image_id"])
        if img is None:
            raise ValueError(f"a detection for image {d['image_id']!r}, which the ground truth does not have")
        if "bbox" in d:
            xywh = [float(v) for v in d["bbox"]]
        else:
            x1, y1, x2, y2 = (float(v) / 1000.0 for v in d["box"])
            w, h = img["width"], img["height"]
            x1, y1, x2, y2 = x1 * w, y1 * h, x2 * w, y2 * h  # in the script's order, to the last bit
            xywh = [x1, y1, x2 - x1, y2 - y1]
        out.append({"image_id": d["image_id"], "category_id": d["category_id"], "bbox": xywh,
                    "score": float(d["score"])})
    return out


def _limit_per_image(results: list[dict[str, Any]], max_dets: int) -> list[dict[str, Any]]:
    """LVISResults.limit_dets_per_image: the ``max_dets`` highest-scored detections of each image
    (stable, so ties keep their order), grouped by image in order of first appearance."""
    by_img: dict[Any, list[dict[str, Any]]] = {}
    for r in results:
        by_img.setdefault(r["image_id"], []).append(r)
    out = []
    for rs in by_img.values():
        if len(rs) > max_dets:
            rs = sorted(rs, key=lambda r: r["score"], reverse=True)[:max_dets]
        out.extend(rs)
    return out


def _federated_sets(gt: Any) -> tuple[dict[Any, set[int]], dict[Any, set[int]]]:
    """Per image: the categories that count (positives ∪ ``neg_category_ids``) and the not-exhaustive
    ones. A missing LVIS field is an error, not an empty list: it would silently change AP."""
    counted: dict[Any, set[int]] = {}
    not_exhaustive: dict[Any, set[int]] = {}
    for img_id, img in gt.imgs.items():
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            if key not in img:
                raise ValueError(f"LVIS image {img_id} has no {key!r} (the federated protocol needs it)")
        counted[img_id] = set(img["neg_category_ids"]) | {a["category_id"] for a in gt.imgToAnns.get(img_id, [])}
        not_exhaustive[img_id] = set(img["not_exhaustive_category_ids"])
    return counted, not_exhaustive


def class_ap(
    gt: Any,
    results: list[dict[str, Any]],
    cat_ids: Sequence[int],
    *,
    federated: bool = False,
) -> dict[int, tuple[float, float]]:
    """``{category id: (AP@[.50:.95], AP50)}`` for ``cat_ids`` over every image of ``gt``; NaN for a
    class without ground truth. COCO rules (maxDets 100) or, with ``federated``, LVIS's (see the
    module docstring)."""
    import numpy as np
    from pycocotools.cocoeval import COCOeval

    cat_ids = sorted(set(cat_ids))
    wanted = set(cat_ids)
    not_exhaustive: dict[Any, set[int]] = {}
    if federated:
        results = _limit_per_image(results, LVIS_MAX_DETS)
        counted, not_exhaustive = _federated_sets(gt)
        results = [r for r in results if r["category_id"] in counted[r["image_id"]]]
    results = [r for r in results if r["category_id"] in wanted]
    if not results:  # loadRes cannot take an empty list; no detections is AP 0 wherever there is GT
        has_gt = {a["category_id"] for a in gt.dataset["annotations"]}
        return {c: ((0.0, 0.0) if c in has_gt else (math.nan, math.nan)) for c in cat_ids}

    class _Eval(COCOeval):
        def evaluateImg(self, imgId, catId, aRng, maxDet):  # noqa: N802, N803 (pycocotools' names)
            r = super().evaluateImg(imgId, catId, aRng, maxDet)
            if r is not None and catId in not_exhaustive.get(imgId, ()):
                # LVIS: an unmatched detection of a not-exhaustively annotated class is ignored.
                r["dtIgnore"] = np.logical_or(r["dtIgnore"], r["dtMatches"] == 0)
            return r

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        ev = _Eval(gt, gt.loadRes(results), "bbox")
        ev.params.catIds = cat_ids
        ev.params.areaRng = ev.params.areaRng[:1]
        ev.params.areaRngLbl = ev.params.areaRngLbl[:1]
        ev.params.maxDets = [LVIS_MAX_DETS if federated else COCO_MAX_DETS]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # [T iou, R recall, K class, A area, M maxDets]

    def mean_valid(a: Any) -> float:
        a = a[a > -1]
        return float(np.mean(a)) if a.size else math.nan

    return {c: (mean_valid(precision[:, :, k, 0, -1]), mean_valid(precision[0, :, k, 0, -1]))
            for k, c in enumerate(cat_ids)}


def _mean(values: Iterable[float], nan: str = "skip") -> float:
    """The mean; ``nan="skip"`` leaves NaN values out, ``"propagate"`` keeps them (then NaN)."""
    vals = list(values)
    if nan == "skip":
        vals = [v for v in vals if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def subset_map(
    gt: Any,
    detections: Iterable[Mapping[str, Any]],
    subsets: Mapping[str, Sequence[str]],
    *,
    federated: bool = False,
    nan: str = "skip",
) -> dict[str, Any]:
    """AP per class and its mean over each named class subset, as fractions (``nan``: see the
    module's docstring, "AP").

    ``gt``: see ``load_ground_truth``; ``detections``: see ``boxes_to_results``; ``subsets``: metric
    name → class names, e.g. ``{"mAP_n": novel, "mAP_b": base, "mAP_all": novel + base}``.
    Returns ``{"metrics": {name: mAP}, "AP50": {name: mAP50}, "per_class": {class: AP},
    "per_class_AP50": {class: AP50}}``.
    """
    gt = load_ground_truth(gt)
    results = boxes_to_results(gt, detections)
    every = list(dict.fromkeys(c for names in subsets.values() for c in names))
    ids = category_ids(gt, every)
    aps = class_ap(gt, results, list(ids.values()), federated=federated)
    per_class = {n: aps[ids[n]][0] for n in every}
    per_class50 = {n: aps[ids[n]][1] for n in every}
    return {
        "metrics": {k: _mean((per_class[n] for n in names), nan) for k, names in subsets.items()},
        "AP50": {k: _mean((per_class50[n] for n in names), nan) for k, names in subsets.items()},
        "per_class": per_class,
        "per_class_AP50": per_class50,
    }
