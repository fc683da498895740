"""Linear-time answer-text helpers shared by the rewards, evaluation and the data layer: tag extraction,
the format check, length bounds.

The papers' code uses ``re.search(r"<answer>(.*?)</answer>", ...)`` and
``re.fullmatch(r"<think>.*?</think>\\s*<answer>.*?</answer>", ..., re.DOTALL)``. On adversarial text
these backtrack quadratically (``"<think>" + "</think><answer>" * 10**4`` takes minutes in
``re.fullmatch``), so this module re-implements both with ``str.find`` scans that return exactly what
the regexes return (the equivalence is property-tested against ``re`` in
``tests/test_verifiers_properties.py``) in time linear in the input.
"""

from __future__ import annotations

import re

# No model emits a million characters within any sane max_tokens; bounding the input up front keeps
# every built-in reward's worst case a few milliseconds. Longer completions score 0.
MAX_COMPLETION_CHARS = 1_000_000
# An answer (the <answer> content) longer than this is never a real box list, class name or number.
MAX_ANSWER_CHARS = 65_536

_OPEN, _CLOSE = "<answer>", "</answer>"
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_WS = re.compile(r"\s*")  # the same \s the paper's regex uses (Unicode whitespace)
_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def usable(completion: object) -> bool:
    """True if ``completion`` is a string the built-in rewards will look at."""
    return isinstance(completion, str) and len(completion) <= MAX_COMPLETION_CHARS


def extract_answer(text: str, dotall: bool = True) -> str | None:
    """The group of ``re.search(r"<answer>(.*?)</answer>", text[, re.DOTALL])``, or None.

    Leftmost-start semantics: with DOTALL the first ``<answer>`` with any ``</answer>`` after it wins;
    without DOTALL the candidate must close on the same line, so a failing line is skipped whole.
    """
    if dotall:
        i = text.find(_OPEN)
        if i < 0:
            return None
        j = text.find(_CLOSE, i + 8)
        return None if j < 0 else text[i + 8 : j]
    pos = 0
    while True:
        i = text.find(_OPEN, pos)
        if i < 0:
            return None
        eol = text.find("\n", i)
        if eol < 0:
            eol = len(text)
        j = text.find(_CLOSE, i + 8, eol)
        if j >= 0:
            return text[i + 8 : j]
        # No later <answer> on this line can close either (it would find the same missing </answer>).
        pos = eol + 1


def answer_or_whole(text: str, dotall: bool = True) -> tuple[str, bool]:
    """The stripped ``<answer>`` content, else the stripped text (the papers' fallback); and whether a
    tag was found."""
    ans = extract_answer(text, dotall)
    if ans is None:
        return text.strip(), False
    return ans.strip(), True


def strip_answer_tags(gt_text: str) -> str:
    """Ground-truth answers may be stored with or without ``<answer>`` tags (the papers' datasets
    store ``<answer>…</answer>``); both compare as the stripped inner text."""
    ans = extract_answer(gt_text, dotall=True)
    return (gt_text if ans is None else ans).strip()


def check_format(text: str) -> bool:
    """Exactly ``re.fullmatch(r"<think>.*?</think>\\s*<answer>.*?</answer>", text, re.DOTALL)``.

    The text must start with ``<think>`` and end with ``</answer>``; a match exists iff some
    ``</think>`` (at or after index 7) is followed by whitespace and then an ``<answer>`` that ends no
    later than where the final ``</answer>`` begins. The earliest such ``</think>`` is the best
    candidate, and the whitespace runs after different ``</think>`` are disjoint, so one left-to-right
    pass decides it.
    """
    n = len(text)
    if n < 32 or not text.startswith(_THINK_OPEN) or not text.endswith(_CLOSE):
        return False
    last_open = n - 9 - 8  # latest index where <answer> may start
    pos = 7
    while True:
        k = text.find(_THINK_CLOSE, pos)
        if k < 0 or k + 8 > last_open:
            return False
        j = _WS.match(text, k + 8).end()
        if j > last_open:
            return False
        if text.startswith(_OPEN, j):
            return True
        pos = k + 1


def gt_answer(ground_truth: dict) -> str:
    """``ground_truth["answer"]`` as a stripped string (tags removed); a bad ground truth raises, so a
    broken dataset shows up in ``verifier/errors`` instead of as silent zeros."""
    try:
        ans = ground_truth["answer"]
    except (KeyError, TypeError):
        raise ValueError("ground truth needs an 'answer' string") from None
    if isinstance(ans, bool) or not isinstance(ans, (str, int, float)):
        raise ValueError(f"ground truth 'answer' must be a string, got {type(ans).__name__}")
    return strip_answer_tags(str(ans))


def answer_and_truth(completion: str, ground_truth: dict) -> tuple[str, bool, str] | float:
    """The start of Reason-RFT's `accuracy_reward`: the stripped `<answer>` content (DOTALL; the
    stripped completion when there is no tag), whether there was a tag, and the ground-truth answer —
    or the score when it is already decided: 0.0 for an unusable completion (checked before the
    ground truth is read, as always), 1.0 for an exact match."""
    if not usable(completion):
        return 0.0
    gt = gt_answer(ground_truth)
    pred, tagged = answer_or_whole(completion, dotall=True)
    return 1.0 if pred == gt else (pred, tagged, gt)
