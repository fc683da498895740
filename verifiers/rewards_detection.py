"""Box rewards of Visual-RFT: ``detection_iou``, ``detection_confidence`` (open-vocabulary / few-shot
detection, docs/sources.md V3) and ``grounding_iou``, ``grounding_giou`` (reasoning grounding on LISA).

Coordinates are xyxy in the Qwen2-VL 0–1000 frame. The detection answer is the paper's list
``[{'Position': [x1, y1, x2, y2], 'Confidence': c}, ...]``. The defaults repair and validate where the
paper's code does not; ``parsing="visual_rft"``, ``no_objects="visual_rft"``, ``math_verify=True`` and the
grounding rewards' ``mode="visual_rft"`` are the paper's code (``vrft.verifiers.paper_modes``,
docs/paper-semantics.md).

Written for speed (≥10k completions/s on one core for 10 vs 10 boxes): one ``json.loads`` (C) on a
length-bounded string, then plain-Python loops with local variables and no function calls in the
IoU inner loop.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from vrft.verifiers.answers import MAX_ANSWER_CHARS, answer_or_whole, extract_answer, usable
from vrft.verifiers.registry import boolean, one_of, register

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


_MISSING = object()


class _PaperRaises(Exception):
    """Where the paper's reward code raises and its ``except`` pays 0."""


def _paper_number(v: object) -> float | None:
    """A JSON number as the paper's arithmetic sees it (``true`` is 1), as a float (±inf when too big
    for one); None for any other type."""
    t = type(v)
    if t is not int and t is not float and t is not bool:
        return None
    try:
        return float(v)  # type: ignore[arg-type]
    except OverflowError:
        return math.inf


def parse_detections_visual_rft(completion: str) -> tuple[list[tuple], int] | None:
    """Parse a detection answer exactly as Visual-RFT's ``accuracy_reward_iou`` does (docs/sources.md V3):

    ``re.search(r"<answer>(.*?)</answer>", completion)`` without DOTALL (else the whole completion),
    stripped and wrapped back in ``<answer>…</answer>``; ``[[``→``[``, ``]]``→``]``, newlines removed;
    ``extract_bbox`` takes the text up to the first ``</answer>``, and if it does not end in ``]`` cuts
    it at the last ``},`` and appends ``}]``; ``'``→``"``; ``json.loads``; the result must be a
    non-empty list whose first element is a dict; ``remove_duplicates`` drops a repeated Position
    (first kept). So a pretty-printed multi-line answer and a truncated one never parse, and a list
    ending in ``}`` loses its last item — all as in the paper.

    None (the reward is 0) wherever the paper's code raises or fails to parse: a non-dict item, a
    missing Position or Confidence, a Position that is a number or null, a Confidence that is not a
    number (``true`` is 1). A Position that is not a list of 4 numbers is kept as ``(c, None, …)``:
    the paper's ``calculate_iou`` raises on it only when it is called, i.e. while a ground-truth box
    is still free at that prediction's turn, and ``_match_greedy`` does the same. Coordinates outside
    the frame and confidences outside [0, 1] are used as they are. Kept guard (deliberate deviation): a NaN or infinite confidence or coordinate
    makes that prediction invalid — counted in n_pred, never matched, confidence term 0 — where the
    paper produces a NaN reward (its issues #39, #115, #118). A bare "No Objects" or ``[]`` answer is
    returned as no predictions (the paper's parse fails on it; the reward is 0 either way unless
    ``no_objects="reward"`` pays an empty ground truth).
    """
    if not usable(completion):
        return None
    ans = extract_answer(completion, dotall=False)
    student = (completion if ans is None else ans).strip()
    if len(student) > MAX_ANSWER_CHARS:
        return None
    if student.lower() in _NO_OBJECTS:
        return [], 0
    wrapped = ("<answer>" + student + "</answer>").replace("[[", "[").replace("]]", "]").replace("\n", "")
    text = wrapped[8 : wrapped.find("</answer>")]
    if not text.endswith("]"):
        text = text.rsplit("},", 1)[0] + "}]"
    try:
        data = json.loads(text.replace("'", '"'))
    except (ValueError, RecursionError):
        return None
    if type(data) is not list or not data or type(data[0]) is not dict:
        return None
    try:
        items = _paper_dedup(data)
        valid: list[tuple] = []
        n_invalid = 0
        for pos, item in items:
            c = _paper_number(item.get("Confidence", _MISSING))
            if c is None:
                raise _PaperRaises  # missing: sorted()'s KeyError; not a number: the sums' TypeError
            coords = [_paper_number(v) for v in pos] if type(pos) is list and len(pos) == 4 else [None]
            if not math.isfinite(c) or not all(v is None or math.isfinite(v) for v in coords):
                n_invalid += 1  # kept guard: the paper's NaN
                continue
            if None in coords:
                # The paper's calculate_iou raises on this Position, but only when it is called: while a
                # ground-truth box is still unmatched at this prediction's turn (_match_greedy decides).
                valid.append((c, None, None, None, None))
            else:
                valid.append((c, *coords))
    except _PaperRaises:
        return None
    return valid, n_invalid


def _paper_dedup(data: list) -> list[tuple[object, dict]]:
    """The paper's ``remove_duplicates``: (Position, item) pairs, a repeated Position dropped; raises
    where its ``tuple(bbox['Position'])`` or set lookup does."""
    seen: set[tuple] = set()
    out = []
    for item in data:
        if type(item) is not dict:
            raise _PaperRaises  # bbox['Position'] on a non-dict
        pos = item.get("Position", _MISSING)
        if type(pos) not in (list, str, dict):
            raise _PaperRaises  # missing (KeyError), or a number / null / bool: tuple() raises
        key = tuple(pos)  # type: ignore[arg-type]
        try:
            if key in seen:
                continue
        except TypeError:  # an unhashable element (a nested list)
            raise _PaperRaises from None
        seen.add(key)
        out.append((pos, item))
    return out


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def paper_detection_solution(gts: list[tuple[float, float, float, float]]) -> str:
    """The paper's solution string for these boxes (docs/sources.md V5), what its math-verify shortcut
    parses: ``<answer>[{'Position': [x1, y1, x2, y2], 'Confidence': 1}, ...]</answer>``, or
    ``<answer>No Objects</answer>``."""
    if not gts:
        return "<answer>No Objects</answer>"
    body = ", ".join("{'Position': [" + ", ".join(_fmt(v) for v in b) + "], 'Confidence': 1}" for b in gts)
    return f"<answer>[{body}]</answer>"


def _paper_shortcut(completion: str, sol: str) -> bool:
    """Visual-RFT's math-verify shortcut, ``verify(parse(completion), parse(sol)) > 0`` (time-budgeted)."""
    from vrft.verifiers.math_reward import paper_verify  # lazy: math_reward is only needed with math_verify

    return paper_verify(completion, sol)


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


def _match_greedy(preds: list, gts: list) -> tuple[float, float] | None:
    """The paper's ``sort_and_calculate_iou``: predictions by confidence (highest first, stable) each
    take the still-unmatched GT box of highest IoU; a match needs IoU > 0.5.
    Returns (sum of matched IoU, sum of confidence terms: c if matched else 1 - c), or None where the
    paper's code raises (a malformed Position met while a GT box is free; only from visual_rft parsing)."""
    preds = sorted(preds, key=lambda p: p[0], reverse=True)
    free = [(gx1, gy1, gx2, gy2, (gx2 - gx1) * (gy2 - gy1)) for gx1, gy1, gx2, gy2 in gts]
    iou_sum = 0.0
    conf_sum = 0.0
    for c, x1, y1, x2, y2 in preds:
        if x1 is None:
            # A malformed Position (parsing="visual_rft"): the paper's calculate_iou raises on it if
            # any ground-truth box is still free, and its except pays 0; else it records (0, c).
            if free:
                return None
            conf_sum += 1.0 - c
            continue
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


def _match_hungarian(preds: list, gts: list) -> tuple[float, float] | None:
    """Optimal one-to-one assignment maximizing the summed IoU over pairs with IoU > 0.5 (pairs at or
    under the threshold are worth 0, so they never displace a real match). None with a malformed
    Position (visual_rft parsing) and a ground-truth box (the paper's code raises)."""
    if gts and any(p[1] is None for p in preds):
        return None
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
    completion: str, ground_truth: dict, matching: str, no_objects: str, frame: str = "rel1000",
    parsing: str = "repaired", math_verify: bool = False,
) -> tuple[float, float, int, int] | float:
    """(iou_sum, conf_sum, n_gt, n_pred) or a final score for both rewards."""
    gts = gt_boxes(ground_truth)
    if math_verify and usable(completion) and _paper_shortcut(completion, paper_detection_solution(gts)):
        return 1.0
    if parsing == "visual_rft":
        parsed = parse_detections_visual_rft(completion)
    else:
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
    matched = match(preds, gts)
    if matched is None:
        return 0.0
    iou_sum, conf_sum = matched
    return iou_sum, conf_sum, len(gts), n_pred


# frame: "rel1000" (Qwen2-VL, Qwen3-VL) or "pixels" (Qwen2.5-VL: the resized image's pixels); the
# orchestrator sets it from the model family.
# parsing: "repaired" (default) or "visual_rft" (the paper's extract_bbox, bugs included); math_verify:
# the paper's math-verify shortcut in front (1.0 on both rewards when it fires).
_DET_OPTIONS = {"matching": one_of("greedy", "hungarian"), "no_objects": one_of("reward", "visual_rft"),
                "frame": one_of(*FRAME_MAX), "parsing": one_of("repaired", "visual_rft"),
                "math_verify": boolean}


@dataclass(frozen=True)
class DetectionOptions:
    """The options both detection rewards take (validated by ``_DET_OPTIONS``)."""
    matching: str = "greedy"
    no_objects: str = "reward"
    frame: str = "rel1000"
    parsing: str = "repaired"
    math_verify: bool = False


def _scores(completion: str, ground_truth: dict, options: dict) -> tuple[float, float, int, int] | float:
    o = DetectionOptions(**options)
    return _detection_scores(completion, ground_truth, o.matching, o.no_objects, o.frame, o.parsing, o.math_verify)


@register("detection_iou", 0.0, 1.0, options={**_DET_OPTIONS, "denominator": one_of("max", "pred")})
def detection_iou(completion: str, ground_truth: dict, *, denominator: str = "max", **options) -> float:
    """Visual-RFT R_IoU = Σ IoU of matches / max(n_gt, n_pred), capped at 1 (``compute_reward_iou_v2``);
    ``denominator="pred"`` divides by n_pred (the paper's Eq. 6). Empty ground truth with "No Objects"
    or ``[]`` scores 1 (``no_objects="visual_rft"``: 0, as the original code). ``parsing="visual_rft"``
    reads the answer as the paper's code does (``parse_detections_visual_rft``); ``math_verify=True``
    puts the paper's math-verify shortcut in front. Other options: ``DetectionOptions``."""
    s = _scores(completion, ground_truth, options)
    if type(s) is float:
        return s
    iou_sum, _, n_gt, n_pred = s
    den = n_pred if denominator == "pred" else (n_gt if n_gt > n_pred else n_pred)
    r = iou_sum / den
    return 1.0 if r > 1.0 else r


@register("detection_confidence", 0.0, 1.0, options=_DET_OPTIONS)
def detection_confidence(completion: str, ground_truth: dict, **options) -> float:
    """Visual-RFT R_conf = mean over predictions of (c if matched else 1 − c), clipped to [0, 1]
    (paper Eqs. 7–8, ``compute_reward_confidence``); an invalid prediction contributes 0. Options as
    ``detection_iou`` (``DetectionOptions``)."""
    s = _scores(completion, ground_truth, options)
    if type(s) is float:
        return s
    _, conf_sum, _, n_pred = s
    r = conf_sum / n_pred
    return 0.0 if r < 0.0 else (1.0 if r > 1.0 else r)
