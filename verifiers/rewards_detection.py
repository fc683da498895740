"""Box rewards of Visual-RFT: ``detection_iou``, ``detection_confidence`` (open-vocabulary / few-shot
detection, papers.md §1.3) and ``grounding_iou``, ``grounding_giou`` (reasoning grounding on LISA).

Coordinates are xyxy in the Qwen2-VL 0–1000 frame. The detection answer is the paper's list
``[{'Position': [x1, y1, x2, y2], 'Confidence': c}, ...]``.

Written for speed (≥10k completions/s on one core for 10 vs 10 boxes): one ``json.loads`` (C) on a
length-bounded string, then plain-Python loops with local variables and no function calls in the
IoU inner loop.
"""

from __future__ import annotations

import json
import math
import re

from verifiers._text import MAX_ANSWER_CHARS, answer_or_whole, usable
from verifiers.registry import one_of, register

_NO_OBJECTS = frozenset({"no objects", "no objects.", "[]"})
_IOU_THRESHOLD = 0.5  # a match needs IoU strictly greater (the paper's `best_iou > iou_threshold`)


# ---- parsing ------------------------------------------------------------------------------------


# The largest coordinate a prediction may name, per answer frame: Qwen2-VL's 0–1000 frame, or the
# absolute pixels of the resized image (Qwen2.5-VL), bounded only to keep absurd values out.
FRAME_MAX = {"rel1000": 1000, "pixels": 100_000}


def parse_detections(completion: str, max_coord: float = 1000,
                     ) -> tuple[list[tuple[float, float, float, float, float]], int] | None:
    """Parse a detection answer the way Visual-RFT's ``extract_bbox`` does, then validate.

    Returns ``(valid, n_invalid)`` where ``valid`` holds ``(confidence, x1, y1, x2, y2)`` of the
    de-duplicated valid predictions in answer order, or None when the answer does not parse (the
    paper then pays 0). "No Objects" and ``[]`` parse as no predictions.

    Repairs, as in the paper: ``[[``→``[``, ``]]``→``]``, newlines removed, a list that does not end
    in ``]`` is cut after its last complete item (``},``), single quotes become double quotes.
    Deviations: the ``<answer>`` content is taken with DOTALL (so a pretty-printed multi-line list
    parses, which is what the newline repair is for); an answer cut off before ``</answer>`` (max
    tokens) is read to the end of the completion, so the truncation repair applies to it; a list that
    ends right after an item (``}``) is closed with ``]`` rather than rejected. A prediction is invalid (kept in the count, never matched,
    confidence term 0) when it is not a dict, its Position is not 4 finite numbers in [0, max_coord], or
    its Confidence is not a finite number in [0, 1]; NaN can therefore never reach a reward.
    """
    if not usable(completion):
        return None
    text, tagged = answer_or_whole(completion, dotall=True)
    if not tagged:
        # A completion cut by max_tokens has no </answer>: read from <answer> to the end, which is
        # what the paper's extract_bbox intends ("assume it should be at the end").
        i = completion.find("<answer>")
        if i >= 0:
            text = completion[i + 8 :].strip()
    if len(text) > MAX_ANSWER_CHARS:
        return None
    if text.lower() in _NO_OBJECTS:
        return [], 0
    text = text.replace("[[", "[").replace("]]", "]").replace("\n", "")
    if not text.endswith("]"):
        if text.endswith("}"):
            text += "]"
        else:
            cut = text.rfind("},")
            # Without a complete item the paper appends "}]" to the whole text: that repairs a single
            # item cut just before its closing brace.
            text = (text[:cut] if cut >= 0 else text) + "}]"
    text = text.replace("'", '"')
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if type(data) is not list:
        return None
    if not data:
        return [], 0
    if type(data[0]) is not dict:
        return None  # the paper's `type(student_answer_bbox[0]) != dict` check
    valid: list[tuple[float, float, float, float, float]] = []
    seen: set[tuple] = set()
    n_invalid = 0
    for item in data:
        if type(item) is not dict:
            n_invalid += 1
            continue
        pos = item.get("Position")
        if type(pos) is not list or len(pos) != 4:
            n_invalid += 1
            continue
        x1, y1, x2, y2 = pos
        ok = True
        for v in pos:
            t = type(v)
            # `0 <= v <= max_coord` is False for NaN and ±inf, so one comparison rejects all three.
            if (t is not int and t is not float) or not (0 <= v <= max_coord):
                ok = False
                break
        if not ok:
            n_invalid += 1
            continue
        key = (x1, y1, x2, y2)
        if key in seen:
            continue  # the paper's remove_duplicates: same Position, first one kept
        seen.add(key)
        c = item.get("Confidence")
        tc = type(c)
        if (tc is not int and tc is not float) or not (0 <= c <= 1):
            n_invalid += 1
            continue
        valid.append((c, x1, y1, x2, y2))
    return valid, n_invalid


def gt_boxes(ground_truth: dict) -> list[tuple[float, float, float, float]]:
    """``ground_truth["boxes"]`` validated as finite xyxy boxes."""
    try:
        boxes = ground_truth["boxes"]
    except (KeyError, TypeError):
        raise ValueError("detection ground truth needs 'boxes': [[x1, y1, x2, y2], ...]") from None
    out = []
    for b in boxes:
        out.append(_box(b, "boxes"))
    return out


def _box(b: object, what: str) -> tuple[float, float, float, float]:
    if not isinstance(b, (list, tuple)) or len(b) != 4:
        raise ValueError(f"ground truth {what!r}: each box must be [x1, y1, x2, y2], got {b!r}")
    for v in b:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"ground truth {what!r}: coordinates must be finite numbers, got {b!r}")
    x1, y1, x2, y2 = b
    if x2 < x1 or y2 < y1:
        raise ValueError(f"ground truth {what!r}: box must have x2 >= x1 and y2 >= y1, got {b!r}")
    return (x1, y1, x2, y2)


# ---- matching -----------------------------------------------------------------------------------


def _match_greedy(preds: list, gts: list) -> tuple[float, float]:
    """The paper's ``sort_and_calculate_iou``: predictions by confidence (highest first, stable) each
    take the still-unmatched GT box of highest IoU; a match needs IoU > 0.5.
    Returns (sum of matched IoU, sum of confidence terms: c if matched else 1 - c)."""
    preds = sorted(preds, key=lambda p: p[0], reverse=True)
    free = [(gx1, gy1, gx2, gy2, (gx2 - gx1) * (gy2 - gy1)) for gx1, gy1, gx2, gy2 in gts]
    iou_sum = 0.0
    conf_sum = 0.0
    for c, x1, y1, x2, y2 in preds:
        area = (x2 - x1) * (y2 - y1)
        best = 0.0
        best_j = -1
        for j, (gx1, gy1, gx2, gy2, garea) in enumerate(free):
            iw = (x2 if x2 < gx2 else gx2) - (x1 if x1 > gx1 else gx1)
            if iw <= 0:
                continue
            ih = (y2 if y2 < gy2 else gy2) - (y1 if y1 > gy1 else gy1)
            if ih <= 0:
                continue
            inter = iw * ih
            iou = inter / (area + garea - inter)  # > 0: inter > 0 implies both areas >= inter
            if iou > best:
                best = iou
                best_j = j
        if best > _IOU_THRESHOLD:
            del free[best_j]
            iou_sum += best
            conf_sum += c
        else:
            conf_sum += 1.0 - c
    return iou_sum, conf_sum


def box_iou(a: tuple, b: tuple) -> float:
    """Plain xyxy IoU (no +1 pixel convention), 0 for disjoint or degenerate boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _match_hungarian(preds: list, gts: list) -> tuple[float, float]:
    """Optimal one-to-one assignment maximizing the summed IoU over pairs with IoU > 0.5 (pairs at or
    under the threshold are worth 0, so they never displace a real match)."""
    if not preds or not gts:
        return 0.0, sum(1.0 - p[0] for p in preds)
    from scipy.optimize import linear_sum_assignment  # lazy: scipy costs ~0.3 s to import

    m = [[0.0] * len(gts) for _ in preds]
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            v = box_iou(p[1:], g)
            m[i][j] = v if v > _IOU_THRESHOLD else 0.0
    rows, cols = linear_sum_assignment(m, maximize=True)
    matched = {int(r): m[r][c] for r, c in zip(rows, cols, strict=True) if m[r][c] > 0.0}
    iou_sum = sum(matched.values())
    conf_sum = sum(p[0] if i in matched else 1.0 - p[0] for i, p in enumerate(preds))
    return iou_sum, conf_sum


def _detection_scores(
    completion: str, ground_truth: dict, matching: str, no_objects: str, frame: str = "rel1000"
) -> tuple[float, float, int, int] | float:
    """(iou_sum, conf_sum, n_gt, n_pred) or a final score for both rewards."""
    gts = gt_boxes(ground_truth)
    parsed = parse_detections(completion, FRAME_MAX[frame])
    if parsed is None:
        return 0.0
    preds, n_invalid = parsed
    n_pred = len(preds) + n_invalid
    if not gts and no_objects == "visual_rft":
        return 0.0  # the paper's extract_bbox fails on a "No Objects" ground truth: always 0
    if n_pred == 0:
        return 1.0 if not gts else 0.0
    match = _match_hungarian if matching == "hungarian" else _match_greedy
    iou_sum, conf_sum = match(preds, gts)
    return iou_sum, conf_sum, len(gts), n_pred


# frame: "rel1000" (Qwen2-VL, Qwen3-VL) or "pixels" (Qwen2.5-VL: the resized image's pixels); the
# orchestrator sets it from the model family.
_DET_OPTIONS = {"matching": one_of("greedy", "hungarian"), "no_objects": one_of("reward", "visual_rft"),
                "frame": one_of(*FRAME_MAX)}


@register("detection_iou", 0.0, 1.0, options={**_DET_OPTIONS, "denominator": one_of("max", "pred")})
def detection_iou(
    completion: str,
    ground_truth: dict,
    *,
    denominator: str = "max",
    matching: str = "greedy",
    no_objects: str = "reward",
    frame: str = "rel1000",
) -> float:
    """Visual-RFT R_IoU = Σ IoU of matches / max(n_gt, n_pred), capped at 1 (``compute_reward_iou_v2``);
    ``denominator="pred"`` divides by n_pred (the paper's Eq. 6). Empty ground truth with "No Objects"
    or ``[]`` scores 1 (``no_objects="visual_rft"``: 0, as the original code)."""
    s = _detection_scores(completion, ground_truth, matching, no_objects, frame)
    if type(s) is float:
        return s
    iou_sum, _, n_gt, n_pred = s
    den = n_pred if denominator == "pred" else (n_gt if n_gt > n_pred else n_pred)
    r = iou_sum / den
    return 1.0 if r > 1.0 else r


@register("detection_confidence", 0.0, 1.0, options=_DET_OPTIONS)
def detection_confidence(
    completion: str,
    ground_truth: dict,
    *,
    matching: str = "greedy",
    no_objects: str = "reward",
    frame: str = "rel1000",
) -> float:
    """Visual-RFT R_conf = mean over predictions of (c if matched else 1 − c), clipped to [0, 1]
    (paper Eqs. 7–8, ``compute_reward_confidence``); an invalid prediction contributes 0."""
    s = _detection_scores(completion, ground_truth, matching, no_objects, frame)
    if type(s) is float:
        return s
    _, conf_sum, _, n_pred = s
    r = conf_sum / n_pred
    return 0.0 if r < 0.0 else (1.0 if r > 1.0 else r)


# ---- grounding (LISA) ---------------------------------------------------------------------------

_POINTS_RE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def parse_grounding_box(completion: str) -> tuple[int, int, int, int] | None:
    """The first ``(x1,y1),(x2,y2)`` of the ``<answer>`` content (the whole completion without tags),
    with the paper's regex; None if absent, if a number has more than 9 digits, or if the corners are
    reversed (x2 < x1 or y2 < y1)."""
    if not usable(completion):
        return None
    text, _ = answer_or_whole(completion, dotall=True)
    m = _POINTS_RE.search(text)
    if m is None:
        return None
    groups = m.groups()
    if any(len(g) > 9 for g in groups):
        return None
    x1, y1, x2, y2 = (int(g) for g in groups)
    if x2 < x1 or y2 < y1:
        return None
    return x1, y1, x2, y2


def _gt_box(ground_truth: dict) -> tuple[float, float, float, float]:
    try:
        b = ground_truth["box"]
    except (KeyError, TypeError):
        raise ValueError("grounding ground truth needs 'box': [x1, y1, x2, y2]") from None
    return _box(b, "box")


def _iou_giou(p: tuple, g: tuple) -> tuple[float, float]:
    iw = max(0.0, min(p[2], g[2]) - max(p[0], g[0]))
    ih = max(0.0, min(p[3], g[3]) - max(p[1], g[1]))
    inter = iw * ih
    union = (p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
    iou = inter / union if union > 0 else 0.0
    c = (max(p[2], g[2]) - min(p[0], g[0])) * (max(p[3], g[3]) - min(p[1], g[1]))
    giou = iou - (c - union) / c if c > 0 else iou
    return iou, giou


def _grounding_overlap(completion: str, ground_truth: dict) -> tuple[float, float] | None:
    """(IoU, GIoU) of the first predicted box with the ground truth; None if no box parses. An
    exact box is (1, 1) (the paper's string-equality shortcut, which also covers a degenerate
    ground-truth box)."""
    g = _gt_box(ground_truth)  # read first: a bad ground truth raises even for a bad answer
    p = parse_grounding_box(completion)
    if p is None:
        return None
    return (1.0, 1.0) if p == g else _iou_giou(p, g)


@register("grounding_iou", 0.0, 1.0)
def grounding_iou(completion: str, ground_truth: dict) -> float:
    """IoU of the first predicted ``(x1,y1),(x2,y2)`` with the ground-truth box, in [0, 1] (the LISA
    evaluation's per-sample IoU; an unparseable answer is 0). An exact box scores 1."""
    overlap = _grounding_overlap(completion, ground_truth)
    return 0.0 if overlap is None else min(1.0, max(0.0, overlap[0]))


@register("grounding_giou", 0.0, 2.0)
def grounding_giou(completion: str, ground_truth: dict) -> float:
    """Visual-RFT LISA reward GIoU + 1, in [0, 2]; 2.0 when the answer box equals the ground truth
    (the paper's string-equality shortcut, which also covers a degenerate ground-truth box). Reversed
    corners score 0 instead of the paper's spurious positive GIoU from negative areas."""
    overlap = _grounding_overlap(completion, ground_truth)
    return 0.0 if overlap is None else min(2.0, max(0.0, overlap[1] + 1.0))
