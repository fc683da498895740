"""Visual-RFT's LISA reasoning-grounding rewards (docs/sources.md V3): ``grounding_iou`` (the evaluation's
per-sample IoU) and ``grounding_giou`` (the training reward GIoU + 1), on the first
``(x1,y1),(x2,y2)`` of the answer; ``mode="visual_rft"`` reproduces the paper's code as written."""

from __future__ import annotations

import math
import re

from vrft.verifiers.answers import MAX_ANSWER_CHARS, answer_or_whole, usable
from vrft.verifiers.registry import boolean, one_of, register
from vrft.verifiers.rewards_detection import _box, _fmt, _paper_shortcut

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


def _lisa_gt_string(g: tuple) -> str:
    """The paper's LISA solution text, ``gen_sft.py``'s ``(x1,y1),(x2,y2)``."""
    return f"({_fmt(g[0])},{_fmt(g[1])}),({_fmt(g[2])},{_fmt(g[3])})"


def _lisa_corners(text: str) -> tuple[str, str, str, str] | None:
    """The paper's ``student_bbox[0]``, ``student_bbox[1]`` from ``re.findall`` of its regex: the first
    box's top-left corner and, when there are two boxes or more, the second box's top-left corner
    (else the first box's bottom-right). None without a box."""
    found = []
    for m in _POINTS_RE.finditer(text):
        found.append(m.groups())
        if len(found) == 2:
            break
    if not found:
        return None
    return found[0][:2] + (found[1][:2] if len(found) == 2 else found[0][2:])


def _paper_giou_plus_one(g: tuple, p: tuple[str, str, str, str]) -> float:
    """``grpo_lisa.py``'s ``compute_giou(gt, student)`` on both boxes divided by 1000, operation for
    operation (GIoU + 1); 0 where its ``int()`` or division raises (the paper's ``except``)."""
    try:
        x1_st, y1_st, x2_st, y2_st = (int(v) / 1000 for v in p)
    except (ValueError, OverflowError):  # over 4300 digits / too large for a float
        return 0.0
    x1_gt, y1_gt, x2_gt, y2_gt = (v / 1000 for v in g)
    inter_width = max(0, min(x2_gt, x2_st) - max(x1_gt, x1_st))
    inter_height = max(0, min(y2_gt, y2_st) - max(y1_gt, y1_st))
    inter_area = inter_width * inter_height
    union_area = (x2_gt - x1_gt) * (y2_gt - y1_gt) + (x2_st - x1_st) * (y2_st - y1_st) - inter_area
    iou = inter_area / union_area if union_area > 0 else 0
    c_area = (max(x2_gt, x2_st) - min(x1_gt, x1_st)) * (max(y2_gt, y2_st) - min(y1_gt, y1_st))
    giou = iou - (c_area - union_area) / c_area if c_area > 0 else iou
    return giou + 1


_GROUNDING_MODE = one_of("strict", "visual_rft")


@register("grounding_iou", 0.0, 1.0, options={"mode": _GROUNDING_MODE})
def grounding_iou(completion: str, ground_truth: dict, *, mode: str = "strict") -> float:
    """IoU of the first predicted ``(x1,y1),(x2,y2)`` with the ground-truth box, in [0, 1] (the LISA
    evaluation's per-sample IoU; an unparseable answer is 0). An exact box scores 1.

    ``mode="visual_rft"``: ``Qwen2_VL_lisa_infere.py``'s IoU: the first box anywhere in the completion
    (the think text included), both boxes divided by 1000, I / (A + B − I + 1e-6), 0 where the
    script's ``except`` would catch; kept guard: the result is clipped to [0, 1] (reversed corners
    give the script 0 or -0.0 too: their intersection is empty)."""
    if mode == "visual_rft":
        g = _gt_box(ground_truth)
        if not usable(completion):
            return 0.0
        m = _POINTS_RE.search(completion)
        if m is None:
            return 0.0
        try:
            p = [int(v) / 1000 for v in m.groups()]
            q = [v / 1000 for v in g]
            inter = max(0.0, min(p[2], q[2]) - max(p[0], q[0])) * max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            r = inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter + 1e-6)
        except (ArithmeticError, ValueError):
            return 0.0
        return min(1.0, max(0.0, r)) if math.isfinite(r) else 0.0
    overlap = _grounding_overlap(completion, ground_truth)
    return 0.0 if overlap is None else min(1.0, max(0.0, overlap[0]))


@register("grounding_giou", 0.0, 2.0, options={"mode": _GROUNDING_MODE, "math_verify": boolean})
def grounding_giou(completion: str, ground_truth: dict, *, mode: str = "strict",
                   math_verify: bool = False) -> float:
    """Visual-RFT LISA reward GIoU + 1, in [0, 2]; 2.0 when the answer box equals the ground truth
    (the paper's string-equality shortcut, which also covers a degenerate ground-truth box). Reversed
    corners score 0 instead of the paper's spurious positive GIoU from negative areas.

    ``mode="visual_rft"``: ``grpo_lisa.py``'s ``accuracy_reward`` (docs/sources.md V3): the ``<answer>``
    content (DOTALL; the completion without a tag), ``re.findall`` of the box regex, the first box's
    top-left corner with the second box's top-left corner when there are several (its
    ``student_bbox[1]``), GIoU + 1 on coordinates / 1000; then 2.0 if the stripped answer string
    equals the ground-truth string ``(x1,y1),(x2,y2)``. Corners written backwards (x2 < x1 or
    y2 < y1, e.g. two boxes' top-left corners) get the paper's signed-area arithmetic, which pays a
    box written backwards on the ground truth 2.0. Kept guard (deliberate deviation): the result is
    clipped to [0, 2] (the paper's is unbounded there: ``(100,100),(0,0)`` against
    ``(0,0),(10,10)`` pays 101) and a non-finite one is 0.
    ``math_verify=True`` puts the paper's shortcut in front: 1.0 (not 2.0) when
    ``verify(parse(completion), parse("<answer> (x1,y1),(x2,y2) </answer>"))`` holds.
    """
    g = _gt_box(ground_truth)  # read first: a bad ground truth raises even for a bad answer
    if not usable(completion):
        return 0.0
    gt_text = _lisa_gt_string(g)
    if math_verify and _paper_shortcut(completion, f"<answer> {gt_text} </answer>"):
        return 1.0
    if mode != "visual_rft":
        overlap = _grounding_overlap(completion, ground_truth)
        return 0.0 if overlap is None else min(2.0, max(0.0, overlap[1] + 1.0))
    text, _ = answer_or_whole(completion, dotall=True)
    if len(text) > MAX_ANSWER_CHARS:
        return 0.0
    if text == gt_text:
        return 2.0
    p = _lisa_corners(text)
    if p is None:
        return 0.0  # the paper's compute_giou raises on an empty student_bbox: its except pays 0
    r = _paper_giou_plus_one(g, p)
    return min(2.0, max(0.0, r)) if math.isfinite(r) else 0.0
