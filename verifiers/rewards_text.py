"""Text rewards: ``format`` (both papers), ``classification`` (Visual-RFT), ``counting`` (Reason-RFT),
``choice`` (multiple-choice letters).

docs/sources.md V3 and R4 give the originals; every deviation is an option or is listed in
docs/verifiers.md.
"""

from __future__ import annotations

import re

from vrft.verifiers.answers import (
    MAX_ANSWER_CHARS,
    answer_and_truth,
    answer_or_whole,
    check_format,
    extract_answer,
    gt_answer,
    usable,
)
from vrft.verifiers.registry import boolean, one_of, register, str_list_or_none

# ---- format -------------------------------------------------------------------------------------


@register("format", 0.0, 1.0)
def format_reward(completion: str, ground_truth: dict) -> float:
    """1.0 iff ``re.fullmatch(r"<think>.*?</think>\\s*<answer>.*?</answer>", completion, re.DOTALL)``
    (Visual-RFT and Reason-RFT), computed in linear time."""
    return 1.0 if usable(completion) and check_format(completion) else 0.0


# ---- classification -----------------------------------------------------------------------------

# Separators that make an answer a list of classes ("A or B", "A, B"). One only counts when the
# ground-truth name itself does not contain it ("salt and pepper", "Ram C/V" keep working).
_MULTI_RE = re.compile(r",|;|\||\n|&|\bor\b|\band\b|\bvs\.?(?!\w)", re.IGNORECASE)
_MAX_CLASS_ANSWER = 4096
# A tag inside the answer: the non-greedy <answer>(.*?)</answer> of a completion that opens <answer>
# inside its <think> spans "…</think><answer>blue" (found by the CPU demo's rollout records: the policy
# learned "<answer>x</think><answer>blue</answer>", which the format reward also passes).
_TAG_RE = re.compile(r"</?\s*(?:think|answer)\s*>", re.IGNORECASE)


def _norm_cls(s: str) -> str:
    # The paper's normalization: drop spaces and underscores, lower-case.
    return s.replace(" ", "").replace("_", "").lower()


@register(
    "classification",
    0.0,
    1.0,
    options={"mode": one_of("strict", "visual_rft"), "classes": str_list_or_none, "math_verify": boolean},
)
def classification(
    completion: str,
    ground_truth: dict,
    *,
    mode: str = "strict",
    classes: tuple[str, ...] | None = None,
    math_verify: bool = False,
) -> float:
    """Visual-RFT fine-grained classification accuracy, in {0, 1}.

    ``mode="visual_rft"`` is the paper's code: take ``<answer>(.*?)</answer>`` (no DOTALL; the whole
    completion when absent) and the ground truth, remove spaces and ``_``, lower-case, and pay 1 if
    either contains the other. That pays an empty answer and ``"A or B or C"`` (issue #79).

    ``mode="strict"`` (default) closes those hacks: the answer must be inside ``<answer>`` tags, be
    non-empty, name one class (no list separator that the ground truth lacks; with ``classes`` given,
    no other class name of the list may appear), and contain the normalized ground truth. The
    reverse test (answer inside the ground truth) is dropped: it is what pays ``""`` and ``"e"``.

    ``math_verify=True`` puts the paper's shortcut in front (``grpo_classification.py``): 1 if
    ``verify(parse(completion), parse("<answer>" + gt + "</answer>"))``, which pays "Boeing 737-400"
    for "Boeing 737-300" (both parse to 737). Off by default; the paper's setting is
    ``mode="visual_rft", math_verify=True`` (``vrft.verifiers.paper_modes``).
    """
    if not usable(completion):
        return 0.0
    gt = gt_answer(ground_truth)
    if math_verify and paper_math_verify(completion, f"<answer>{gt}</answer>"):
        return 1.0
    gt_n = _norm_cls(gt)
    if mode == "visual_rft":
        pred_n = _norm_cls(answer_or_whole(completion, dotall=False)[0])
        return 1.0 if (gt_n in pred_n or pred_n in gt_n) else 0.0

    ans = extract_answer(completion, dotall=True)
    if ans is None:
        return 0.0
    ans = ans.strip()
    if len(ans) > _MAX_CLASS_ANSWER or _TAG_RE.search(ans):
        return 0.0
    pred_n = _norm_cls(ans)
    if not pred_n or not gt_n or gt_n not in pred_n:
        return 0.0
    gt_seps = {m.group(0).lower() for m in _MULTI_RE.finditer(gt)}
    for m in _MULTI_RE.finditer(ans):
        if m.group(0).lower() not in gt_seps:
            return 0.0
    if classes:
        for c in classes:
            c_n = _norm_cls(c)
            # A class name that is part of the ground truth ("rose" in "lenten rose") is not another
            # class being named.
            if c_n and c_n not in gt_n and c_n in pred_n:
                return 0.0
    return 1.0


# ---- counting -----------------------------------------------------------------------------------

_NUM_RE = re.compile(r"[+-]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})")
_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
               "ninety": 90, "hundred": 100, "a hundred": 100, "one hundred": 100})


def to_number(s: str) -> float | None:
    """A plain decimal ("3", "3.0", "+3", ".5") or an English number word up to twenty (and the tens);
    None otherwise. Never returns NaN or infinity (no exponents, bounded digits)."""
    s = s.strip()
    if s.endswith("."):
        s = s[:-1].rstrip()
    if not s or len(s) > 64:
        return None
    if _NUM_RE.fullmatch(s):
        return float(s)
    return None if (w := _WORDS.get(s.lower())) is None else float(w)


def paper_math_verify(completion: str, sol: str) -> bool:
    """The papers' ``float(verify(parse(completion), parse(sol))) > 0``, time-budgeted
    (``vrft.verifiers.math_reward.paper_verify``)."""
    # Imported lazily: math_reward imports this module, and math-verify pulls in sympy (a second).
    from vrft.verifiers.math_reward import paper_verify

    return paper_verify(completion, sol)


def _warm_math() -> None:
    # A scoring process imports math-verify before its first completion, not during it.
    from vrft.verifiers.math_reward import warmup

    warmup()


@register("counting", 0.0, 1.0, options={"numeric": boolean, "fallback": boolean}, warmup=_warm_math)
def counting(completion: str, ground_truth: dict, *, numeric: bool = False, fallback: bool = True) -> float:
    """Reason-RFT counting accuracy (``accuracy_reward``), in {0, 1}.

    1 if the stripped ``<answer>`` content (DOTALL; the stripped completion when there is no tag)
    equals the stripped ground truth. As in the paper, only a completion with no ``<answer>`` tag
    falls back to math-verify, with the paper's own call ``verify(parse(completion), parse(gt))``
    (``fallback=False`` turns that off). ``numeric=True`` also accepts the same number written
    differently: "3.0", " 3 ", "three". The defaults are the paper's code (docs/sources.md R4).
    """
    read = answer_and_truth(completion, ground_truth)
    if isinstance(read, float):
        return read
    pred, tagged, gt = read
    if numeric:
        a, b = to_number(pred), to_number(gt)
        if a is not None and a == b:
            return 1.0
    if not tagged and fallback:
        return 1.0 if paper_math_verify(completion, gt) else 0.0
    return 0.0


# ---- multiple choice ----------------------------------------------------------------------------

_CHOICE_PATTERNS = (
    # "B", "(B)", "B.", "B)", "B:", "[B]", "b"
    re.compile(r"[(\[]?([A-Za-z])[)\]]?[.:)]?"),
    # "Answer: B", "The answer is (B).", "Final answer: option C", "choice: D"
    re.compile(
        r"(?:the\s+)?(?:final\s+|correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:：]?\s*"
        r"(?:option\s+|choice\s+)?[(\[]?([A-Z])[)\]]?\s*[.)]?",
        re.IGNORECASE,
    ),
    # "B. 45°", "(B) 45°", "B) 45°", "B: 45°": a letter followed by its option text
    re.compile(r"[(\[]?([A-Z])(?:[)\]]\s*|[.:]\s+)\S.*", re.DOTALL),
)


def choice_letter(text: str) -> str | None:
    """The single option letter that ``text`` names (upper-case), or None."""
    s = text.strip()
    if not s or len(s) > 512:
        return None
    for pat in _CHOICE_PATTERNS:
        m = pat.fullmatch(s)
        if m:
            letter = m.group(1)
            if pat is _CHOICE_PATTERNS[2] and _names_another_letter(s[m.end(1) :], letter):
                return None
            return letter.upper()
    return None


_OTHER_LETTER = re.compile(r"(?:\bor\b|\band\b|,|/)\s*\(?([A-Z])\b")


def _names_another_letter(rest: str, letter: str) -> bool:
    # "A or B", "A, B" name several options; an option text like "A. 5 or 6" does not name a letter.
    return any(m.group(1) != letter for m in _OTHER_LETTER.finditer(rest[:64]))


@register("choice", 0.0, 1.0)
def choice(completion: str, ground_truth: dict) -> float:
    """1 if the ``<answer>`` content (DOTALL; the whole completion when absent) names the same option
    letter as the ground truth, tolerant of "(B)", "B.", "Answer: B", "B. <option text>"; an answer
    naming several letters ("A or B") scores 0."""
    if not usable(completion):
        return 0.0
    gt = choice_letter(gt_answer(ground_truth))
    if gt is None:
        raise ValueError("ground truth 'answer' of a choice task must be an option letter")
    pred, _ = answer_or_whole(completion, dotall=True)
    if len(pred) > MAX_ANSWER_CHARS:
        return 0.0
    return 1.0 if choice_letter(pred) == gt else 0.0
