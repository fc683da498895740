"""Reason-RFT spatial transformation (TRANCE): ``spatial_transform`` (docs/sources.md R4, R7).

An answer is a sequence of ``func(obj, value)`` calls, e.g. ``change_color(3, 'red')``. Items are
parsed with the paper's regex and de-duplicated; the duplicate penalty is p = n_unique / n_total and
each item is worth ``p / max(n_unique_pred, n_gt)``.

- ``mode="exact"`` (the stage-2 training reward ``only_full_func_accuracy_reward``): item weight ×
  number of exact (func, obj, value) matches.
- ``mode="partial"`` (task ``trance`` and the evaluation metric): greedy matching in four passes,
  ×1 exact, ×0.5 same (func, obj), ×0.5 same (func, value), ×0.25 same func; each predicted and each
  ground-truth item is used at most once.

The original de-duplicates with ``list(set(...))`` and so iterates in hash order, which makes the
partial score depend on ``PYTHONHASHSEED`` when several greedy choices exist; here items keep their
order of first appearance, so the score is deterministic.
"""

from __future__ import annotations

import re

from vrft.verifiers.answers import MAX_ANSWER_CHARS, answer_or_whole, gt_answer, usable
from vrft.verifiers.registry import one_of, register

# The paper's pattern `(\w+)\((\w+),\s*'?(\w+)'?\)` with a `(?<!\w)` guard in front. findall's matches
# always start at the beginning of a word run (an earlier start in the same run would match too and
# is leftmost), so the guard changes no result, but it stops the O(n²) retries from every position
# inside a long word run ("a" * 10**5 took minutes).
_ITEM_RE = re.compile(r"(?<!\w)(\w+)\((\w+),\s*'?(\w+)'?\)")
_PASSES = (
    (lambda p, s: p == s, 1.0),
    (lambda p, s: p[0] == s[0] and p[1] == s[1], 0.5),
    (lambda p, s: p[0] == s[0] and p[2] == s[2], 0.5),
    (lambda p, s: p[0] == s[0], 0.25),
)


def extract_items(text: str) -> tuple[list[tuple[str, str, str]], float]:
    """Unique ``(func, obj, value)`` items in order of first appearance and the duplicate penalty
    n_unique / n_total (0.0 when there are no items)."""
    found = _ITEM_RE.findall(text)
    if not found:
        return [], 0.0
    unique = list(dict.fromkeys(found))
    return unique, len(unique) / len(found)


@register("spatial_transform", 0.0, 1.0, options={"mode": one_of("exact", "partial")})
def spatial_transform(completion: str, ground_truth: dict, *, mode: str = "exact") -> float:
    """TRANCE transformation-sequence reward in [0, 1] (see the module docstring)."""
    if not usable(completion):
        return 0.0
    gt_items, _ = extract_items(gt_answer(ground_truth))
    text, _ = answer_or_whole(completion, dotall=True)
    if len(text) > MAX_ANSWER_CHARS:
        return 0.0
    pred, penalty = extract_items(text)
    if not pred:
        return 0.0  # the paper divides by zero here and its `except` pays 0
    item = penalty / max(len(pred), len(gt_items))
    passes = _PASSES if mode == "partial" else _PASSES[:1]
    free_pred = list(pred)
    free_gt = list(gt_items)
    score = 0.0
    for same, weight in passes:
        kept = []
        for p in free_pred:
            for k, s in enumerate(free_gt):
                if same(p, s):
                    del free_gt[k]
                    score += weight
                    break
            else:
                kept.append(p)
        free_pred = kept
    r = item * score
    return 0.0 if r < 0.0 else (1.0 if r > 1.0 else r)
