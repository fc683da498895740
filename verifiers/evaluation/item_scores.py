"""Per-item evaluation scores of the non-detection benchmarks, each as the papers' evaluation scripts
compute it (docs/sources.md V6, R7), plus the LISA mask metrics. Scores are fractions; the benchmark
layer (``vrft.verifiers.evaluation.benchmarks``) averages them and prints ×100 as the papers do.

These are evaluation metrics, not rewards: where a script differs from the training reward of the
same task (TRANCE has no duplicate penalty here, LISA reads the first box anywhere in the response),
the script wins, because the point is to reproduce the papers' table numbers.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from vrft.verifiers.answers import MAX_COMPLETION_CHARS, extract_answer, strip_answer_tags
from vrft.verifiers.rewards_spatial import extract_items

# ---- fine-grained classification (Visual-RFT Tab. 2) -------------------------------------------


def _norm_cls(s: str) -> str:
    return s.replace(" ", "").replace("_", "").lower()


def classification_correct(completion: str, label: str, *, mode: str = "visual_rft") -> bool:
    """Whether ``completion`` names ``label``.

    ``mode="visual_rft"``: ``Qwen2_VL_classification_infere.py``: the ``<answer>`` content (no DOTALL;
    no tag is wrong) and the label, spaces and ``_`` removed and lower-cased, either containing the
    other. It is what the paper's numbers mean, and it pays an empty answer or "A or B" (issue #79).
    ``mode="exact"``: the same normalised strings must be equal, so only an answer naming exactly the
    class counts; the gap between the two shows how much of an accuracy is substring luck.
    """
    if mode not in ("visual_rft", "exact"):
        raise ValueError(f"unknown classification mode {mode!r}; choose visual_rft or exact")
    if not isinstance(completion, str) or len(completion) > MAX_COMPLETION_CHARS:
        return False
    ans = extract_answer(completion, dotall=False)
    if ans is None:
        return False
    a, g = _norm_cls(ans), _norm_cls(strip_answer_tags(str(label)))
    return a == g if mode == "exact" else (g in a or a in g)


# ---- LISA reasoning grounding (Visual-RFT Tab. 6) -----------------------------------------------

_LISA_BOX_RE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def lisa_box(completion: str) -> list[int] | None:
    """The first ``(x1,y1),(x2,y2)`` anywhere in the response (think text included), as the script's
    ``re.findall(pattern, response)[0]``; None when there is none."""
    if not isinstance(completion, str) or len(completion) > MAX_COMPLETION_CHARS:
        return None
    m = _LISA_BOX_RE.search(completion)
    if m is None:
        return None
    try:
        return [int(v) for v in m.groups()]
    except ValueError:  # over Python's int-string digit limit; the script's except scores it 0
        return None


def lisa_box_iou(completion: str, box: Sequence[float], width: float, height: float) -> float:
    """``Qwen2_VL_lisa_infere.py``'s per-sample IoU: ``lisa_box`` divided by 1000, against the
    ground-truth box in pixels divided by the image's width and height, IoU = I / (A + B − I + 1e-6);
    no box (or any error) is 0.

    Reversed corners give 0 here too: their intersection is empty, so the script's signed areas only
    change the denominator."""
    found = lisa_box(completion)
    if found is None:
        return 0.0
    try:  # the script's `except: ious.append(0)`: absurd numbers overflow, a zero union divides by 0
        p = [v / 1000 for v in found]
        g = [box[0] / width, box[1] / height, box[2] / width, box[3] / height]
        inter = max(0.0, min(p[2], g[2]) - max(p[0], g[0])) * max(0.0, min(p[3], g[3]) - max(p[1], g[1]))
        return inter / ((p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter + 1e-6)
    except (ArithmeticError, ValueError):
        return 0.0


def to_mask(mask: Any) -> Any:
    """A boolean numpy mask from a numpy/nested-list mask or a COCO RLE ``{"size": [h, w], "counts"}``
    (compressed string or uncompressed list), the form prediction records store masks in."""
    import numpy as np

    if isinstance(mask, Mapping):
        from pycocotools import mask as mask_utils

        rle = dict(mask)
        if isinstance(rle.get("counts"), list):
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        elif isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode()
        with warnings.catch_warnings():  # pycocotools' own numpy-2 copy= deprecation, not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            return mask_utils.decode(rle).astype(bool)
    return np.asarray(mask).astype(bool)


def mask_to_rle(mask: Any) -> dict[str, Any]:
    """A JSON-able compressed COCO RLE of a binary mask (what a prediction record's ``mask`` holds)."""
    import numpy as np
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def polygon_mask(points: Sequence[Sequence[float]], height: int, width: int) -> Any:
    """A LISA polygon (``shapes[0]["points"]``) drawn filled with PIL, as ``mask_iou.py`` does."""
    import numpy as np
    from PIL import Image, ImageDraw

    img = Image.new("L", (width, height), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in points], outline=1, fill=1)
    return np.array(img, dtype=np.uint8).astype(bool)


def mask_metrics(pred_masks: Sequence[Any], gt_masks: Sequence[Any]) -> dict[str, float]:
    """``mask_iou.py``: gIoU = mean over images of I / (U + 1e-6), cIoU = ΣI / (ΣU + 1e-6).

    A missing prediction (None) is an empty mask, as in the script: IoU 0, and its ground truth still
    adds to the cumulative union. A shape mismatch raises (the script silently skips the image)."""
    import numpy as np

    if len(pred_masks) != len(gt_masks):
        raise ValueError("predicted and ground-truth masks differ in number")
    if not gt_masks:
        return {"gIoU": 0.0, "cIoU": 0.0}
    ious, total_i, total_u = [], 0, 0
    for k, (p, g) in enumerate(zip(pred_masks, gt_masks, strict=True)):
        g = to_mask(g)
        p = np.zeros_like(g) if p is None else to_mask(p)
        if p.shape != g.shape:
            raise ValueError(f"mask {k}: predicted shape {p.shape} differs from ground truth {g.shape}")
        inter = int(np.logical_and(p, g).sum())
        union = int(np.logical_or(p, g).sum())
        ious.append(inter / (union + 1e-6))
        total_i += inter
        total_u += union
    return {"gIoU": float(np.mean(ious)), "cIoU": total_i / (total_u + 1e-6)}


# ---- Reason-RFT (counting, structure perception, spatial transformation) ---------------------------


def answer_score(completion: str, answer: str) -> float:
    """``cal_score_benchmarks``' counting / GeoMath / Geometry3K score: 1 if the stripped
    ``<answer>`` content (DOTALL; the stripped completion without a tag) equals the answer, else 1 if
    math-verify finds them equivalent, else 0. This is the ``math`` reward (same rule)."""
    from vrft.verifiers.math_reward import math_reward

    return math_reward(completion, {"answer": str(answer)})


def answer_text(completion: str, *, dotall: bool = True) -> str:
    """The stripped ``<answer>`` content, else the stripped completion (what both scripts compare)."""
    ans = extract_answer(completion, dotall=dotall) if isinstance(completion, str) else None
    return (completion if ans is None else ans).strip() if isinstance(completion, str) else ""


def is_choice(answer: str) -> bool:
    """The script's split of structure-perception items: multiple choice iff the answer is A–D."""
    return str(answer).strip() in ("A", "B", "C", "D")


_TRANCE_PASSES = (
    (lambda p, s: p == s, 1.0),
    (lambda p, s: p[:2] == s[:2], 0.5),
    (lambda p, s: p[0] == s[0] and p[2] == s[2], 0.5),
    (lambda p, s: p[0] == s[0], 0.25),
)


def trance_greedy(pred: Sequence[tuple[str, str, str]], sol: Sequence[tuple[str, str, str]]) -> float:
    """``cal_score_benchmarks``' TRANCE matching of two item lists, in [0, 1]: each item is worth
    1 / max(n_pred, n_gt); four passes (exact ×1, same (func, obj) ×0.5, same (func, value) ×0.5,
    same func ×0.25), each giving every still-free predicted item, in order, the first still-free
    solution item it matches. The result depends on both lists' order when choices tie."""
    if not pred or not sol:
        return 0.0
    item = 1.0 / max(len(pred), len(sol))
    free_pred, free_sol, score = list(pred), list(sol), 0.0
    for same, weight in _TRANCE_PASSES:
        left = []
        for p in free_pred:
            k = next((k for k, s in enumerate(free_sol) if same(p, s)), None)
            if k is None:
                left.append(p)
            else:
                del free_sol[k]
                score += weight * item
        free_pred = left
    return score


def trance_eval_score(completion: str, answer: str) -> float:
    """``cal_score_benchmarks``' TRANCE partial credit, in [0, 1] (``trance_greedy``), vrft's strict
    reading: the ``<answer>`` content (no DOTALL; the whole completion without a tag) and the answer
    read as unique ``func(obj, value)`` items in order of first appearance, so scores are reproducible
    (the script iterates ``set`` order: ``script_readings.trance_score_script``). Unlike the training
    reward there is no duplicate penalty."""
    if not isinstance(completion, str) or len(completion) > MAX_COMPLETION_CHARS:
        return 0.0
    gt_items, _ = extract_items(strip_answer_tags(str(answer)))
    ans = extract_answer(completion, dotall=False)
    pred, _ = extract_items((completion if ans is None else ans).strip())
    return trance_greedy(pred, gt_items)
