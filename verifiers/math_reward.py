"""Reason-RFT structure-perception rewards: ``math`` (exact match, then math-verify equivalence) and
``math_tolerance`` (the paper's cosine tolerance, ``math_accuracy_reward``), docs/sources.md R4 and R7.

math-verify is called with its own SIGALRM timeouts disabled and wrapped in
``vrft.verifiers.timeout.call_with_timeout``, which works on every thread (see that module). Inputs are
bounded before parsing: the answer to 1,000 characters, a tag-less completion to its last 4,000
(math-verify reads the final answer from the end).

Time: sympy evaluates integer expressions exactly, so ``9^9^9`` or ``\\prod_{k=1}^{10^{6}} k`` would
hold a scorer until it is killed, and a big-integer power in C cannot even be interrupted. So
``too_costly`` rejects, without parsing, numeric towers and powers, sums, products, factorials and
binomials whose exact value would be huge; and every call gets at most what is left of the
completion's budget (``vrft.verifiers.budget``). Both score 0 and count in ``verifier/timeouts``.

``paper_verify`` is the papers' own call, ``verify(parse(completion), parse(solution)) > 0``, under the
same bounds: Visual-RFT's shortcut (``math_verify=True``) and Reason-RFT's untagged fallback
(``counting``, ``math`` with ``fallback="untagged"``, ``math_tolerance`` with ``mode="reason_rft"``).
"""

from __future__ import annotations

import logging
import math
import re
import threading

from vrft.verifiers import budget
from vrft.verifiers.answers import answer_and_truth, answer_or_whole, gt_answer, usable
from vrft.verifiers.registry import one_of, positive_float, register, unit_float
from vrft.verifiers.timeout import CallTimeout, call_with_timeout

MAX_MATH_ANSWER = 1_000
MAX_MATH_TAIL = 4_000
DEFAULT_TIMEOUT_S = 3.0  # below the pool's 5 s per completion, so a slow sympy call costs one reward

MAX_DIGITS = 10_000  # an exact value longer than this is no answer, and costly to decide
MAX_TERMS = 10_000  # terms of a \sum / \prod, or n of n!, sympy would expand

_NUM = r"\d+(?:\.\d+)?"
_CHAIN = re.compile(rf"{_NUM}(?:\^{_NUM})*")  # a^b^c…: right-associative, numbers only
_EXP_GROUP = re.compile(rf"\^[{{(]({_NUM}(?:\^{_NUM})*)[}})]")  # ^{…} / ^(…) around a numeric chain
_BIG_OP = re.compile(rf"\\(?:sum|prod)_(?:\{{[^{{}}]*\}}|\S)\^(\{{[^{{}}]*\}}|{_NUM}(?:\^{_NUM})*)")
_FACTORIAL = re.compile(rf"[({{]?({_NUM}(?:\^{_NUM})*)[)}}]?!")
_BINOM = re.compile(rf"\\[dt]?binom\{{({_NUM}(?:\^{_NUM})*)\}}\{{({_NUM}(?:\^{_NUM})*)\}}")
_FLOAT_RE = re.compile(r"[+-]?(?:\d{1,40}(?:\.\d{0,40})?|\.\d{1,40})(?:[eE][+-]?\d{1,3})?")
_log = logging.getLogger(__name__)
_READY = False


def warmup() -> None:
    """Import math-verify (and sympy) and run one comparison, so the first real call is not charged
    a second of imports."""
    global _READY
    if _READY:
        return
    import math_verify.grader
    import math_verify.parser

    # We disable math-verify's SIGALRM timeouts on purpose; its one-time warning about that is noise.
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    _READY = True
    _equivalent_untimed("1/2", "0.5")


def to_float(s: str) -> float | None:
    """What the paper's ``float(answer)`` accepts (decimal, optional exponent), minus NaN and ±inf."""
    s = s.strip()
    if not _FLOAT_RE.fullmatch(s):
        return None
    v = float(s)
    return v if math.isfinite(v) else None


def _log10(chain: str) -> float:
    """log10 of a numeric power chain's value, a^b^c = a^(b^c); inf when a level above one that
    already has 300 digits would raise something to it (astronomical)."""
    parts = [float(x) for x in chain.split("^")]
    value = parts[-1]
    for i in range(len(parts) - 2, -1, -1):
        base = parts[i]
        if base <= 1.0:  # 0, 1 or a fraction to any power stays small
            value = base ** min(value, 1e6)
            continue
        digits = value * math.log10(base)
        if digits > 300:
            return math.inf if i > 0 else digits
        value = 10.0**digits
    return math.log10(value) if value > 0 else 0.0


def too_costly(text: str) -> str | None:
    """Why deciding `text` exactly would take sympy too long (None if it looks cheap). Regexes over
    the raw string, never a parse."""
    s = re.sub(r"\s+|\\left|\\right", "", text).replace("**", "^")
    while True:  # 9^{9^{9}} -> 9^9^9: exponent groups are what make a tower
        reduced = _EXP_GROUP.sub(r"^\1", s)
        if reduced == s:
            break
        s = reduced
    for chain in _CHAIN.findall(s):
        if "^" in chain and _log10(chain) > MAX_DIGITS:
            return f"power {chain[:40]} has more than {MAX_DIGITS} digits"
    for bound in _BIG_OP.findall(s):
        chain = _CHAIN.fullmatch(bound.strip("{}"))
        if chain and _log10(chain.group()) > math.log10(MAX_TERMS):
            return f"sum/product over {bound[:40]} terms"
    for n in _FACTORIAL.findall(s):
        if _log10(n) > math.log10(MAX_TERMS):
            return f"factorial of {n[:40]}"
    for n, k in _BINOM.findall(s):
        top, low = _log10(n), _log10(k)
        if low > 3 and top > 3 and min(low, top) + top > math.log10(MAX_DIGITS) + 3:
            return f"binomial of {n[:20]} and {k[:20]}"
    return None


def _check_eps(options: dict) -> None:
    if not options["eps1"] < options["eps2"]:
        raise ValueError(f"needs eps1 < eps2, got eps1={options['eps1']} eps2={options['eps2']}")


def _parse(text: str) -> list:
    from math_verify import parse

    if "\\" in text and "$" not in text:
        # A bare LaTeX answer ("2\\sqrt{3}") is only read whole inside math delimiters.
        got = parse(f"${text}$", parsing_timeout=None)
        if got:
            return got
    return parse(text, parsing_timeout=None)


def _equivalent_untimed(pred: str, gt: str) -> bool:
    """math-verify equivalence of two answer strings, without any timeout (call through
    ``equivalent``)."""
    if not _READY:
        warmup()
    from math_verify import verify

    gold = _parse(gt)
    target = _parse(pred)
    if not gold or not target:
        return False
    return bool(verify(gold, target, timeout_seconds=None))


def _timed(untimed, ref: str, a: str, b: str, timeout_s: float, tail: int | None = MAX_MATH_TAIL) -> bool:
    """``untimed(a, b)`` (named ``ref`` for the helper process) within ``timeout_s`` and what is left
    of the completion's budget, on inputs bounded to their last ``tail`` characters (None: whole);
    False on timeout, on an input too costly to decide, or on any math-verify error (the first two
    are counted as budget exceeded)."""
    if tail is not None:
        a, b = a[-tail:], b[-tail:]
    why = too_costly(a) or too_costly(b)
    timeout_s = budget.left(timeout_s)
    if why or timeout_s <= 0.01:
        _log.debug("math-verify not run: %s", why or "the completion's time budget is spent")
        budget.note_exceeded()
        return False
    if threading.current_thread() is threading.main_thread():
        warmup()  # a second of imports must not be charged to the first answer's timeout
    try:
        return bool(call_with_timeout(untimed, (a, b), timeout_s, ref=ref,
                                      warmup=("vrft.verifiers.math_reward:warmup",)))
    except CallTimeout:
        _log.debug("math-verify timed out after %.1f s", timeout_s)
        budget.note_exceeded()
        return False
    except Exception:  # RemoteError and math-verify bugs must not become reward errors
        _log.debug("math-verify failed", exc_info=True)
        return False


def equivalent(pred: str, gt: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True if math-verify finds ``pred`` equivalent to ``gt`` within ``timeout_s`` and what is left
    of the completion's budget (False on timeout, on an input too costly to decide, or on any
    math-verify error; the first two are counted as budget exceeded)."""
    return _timed(_equivalent_untimed, "vrft.verifiers.math_reward:_equivalent_untimed", pred, gt, timeout_s)


def _paper_verify_untimed(content: str, sol: str) -> bool:
    """The papers' call, untimed (call through ``paper_verify``)."""
    if not _READY:
        warmup()
    from math_verify import parse, verify

    gold = parse(content, parsing_timeout=None)
    target = parse(sol, parsing_timeout=None)
    return float(verify(gold, target, timeout_seconds=None)) > 0


def paper_verify(content: str, sol: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 tail: int | None = MAX_MATH_TAIL) -> bool:
    """The papers' math-verify test, ``float(verify(parse(content), parse(sol))) > 0``, verbatim: the
    whole completion and the raw solution string, in that argument order, no ``$…$`` wrapping
    (Visual-RFT's shortcut at the start of every accuracy reward, Reason-RFT's fallback for a
    completion without ``<answer>``; docs/sources.md V3, R4). Unlike the papers, bounded like
    ``equivalent``: the last ``MAX_MATH_TAIL`` characters, ``too_costly`` inputs refused, ``timeout_s``
    and the completion's budget on any thread; any of those, or a math-verify error, is False.
    ``tail=None`` reads the whole text, as the evaluation scripts do (`vrft eval --scoring paper`)."""
    return _timed(_paper_verify_untimed, "vrft.verifiers.math_reward:_paper_verify_untimed", content, sol,
                  timeout_s, tail)


@register(
    "math",
    0.0,
    1.0,
    options={"timeout_s": positive_float, "fallback": one_of("always", "untagged")},
    warmup=warmup,
)
def math_reward(
    completion: str,
    ground_truth: dict,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    fallback: str = "always",
) -> float:
    """1 if the stripped ``<answer>`` content (DOTALL; the stripped completion when there is no tag)
    equals the ground truth, else:

    - ``fallback="always"`` (default): 1 if math-verify finds that answer equivalent to the ground
      truth (e.g. ``\\frac{1}{2}`` vs ``0.5``), tagged or not;
    - ``fallback="untagged"``: Reason-RFT's ``accuracy_reward`` (docs/sources.md R4): a tagged answer is
      exact match only; only a completion with no ``<answer>`` tag falls back, to the paper's
      ``verify(parse(completion), parse(solution))`` (``paper_verify``).

    math-verify gets ``timeout_s`` seconds on any thread."""
    read = answer_and_truth(completion, ground_truth)
    if isinstance(read, float):
        return read
    pred, tagged, gt = read
    if fallback == "untagged":
        if tagged:
            return 0.0
        return 1.0 if paper_verify(completion, gt, timeout_s) else 0.0
    if tagged and len(pred) > MAX_MATH_ANSWER:
        return 0.0
    if not pred or not gt:
        return 0.0
    return 1.0 if equivalent(pred, gt, timeout_s) else 0.0


def _paper_float(s: str) -> float | None:
    """What the paper's ``float(answer)`` returns (Python's float: "1_000", "+.5", "inf", "nan",
    non-ASCII digits), or None where it raises ValueError. Over ``MAX_MATH_TAIL`` characters: None
    (no number is that long; the paper's float() would read it)."""
    if len(s) > MAX_MATH_TAIL:
        return None
    try:
        return float(s)
    except ValueError:
        return None


@register(
    "math_tolerance",
    0.0,
    1.0,
    options={"eps1": unit_float, "eps2": unit_float, "timeout_s": positive_float,
             "mode": one_of("fixed", "reason_rft")},
    warmup=warmup,
    check=_check_eps,
)
def math_tolerance(
    completion: str,
    ground_truth: dict,
    *,
    eps1: float = 0.05,
    eps2: float = 0.2,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    mode: str = "fixed",
) -> float:
    """Reason-RFT ``math_accuracy_reward``: with Δ = |pred − gt|,
    r = 1 if Δ < ε1|gt|, 0 if Δ > ε2|gt|, else ½(cos(π(Δ − ε1|gt|)/((ε2 − ε1)|gt|)) + 1).

    Non-numeric answers fall back to exact string match; a completion without ``<answer>`` that scored
    0 falls back to math-verify, as in the paper.

    ``mode="fixed"`` (default): Δ = 0 scores 1 (the paper divides 0 by 0 when gt = 0 and pays 0), and
    "nan"/"inf" are not numbers (the paper's ``float()`` returns a NaN reward); numbers are plain
    decimals with an optional exponent.
    ``mode="reason_rft"``: the paper's code (docs/sources.md R4): Python's ``float()`` reads the numbers,
    a correct "0" against a ground truth of 0 pays 0 (its ZeroDivisionError), and the fallback is the
    paper's ``verify(parse(completion), parse(solution))``. Kept guard: where the paper returns NaN
    (a "nan" answer or ground truth, inf against inf) this returns 0.
    """
    if not usable(completion):
        return 0.0
    gt = gt_answer(ground_truth)
    pred, tagged = answer_or_whole(completion, dotall=True)
    if mode == "reason_rft":
        return _tolerance_reason_rft(completion, pred, tagged, gt, eps1, eps2, timeout_s)
    a, b = to_float(pred), to_float(gt)
    if a is not None and b is not None:
        diff = abs(a - b)
        scale = abs(b)
        if diff == 0.0 or diff < eps1 * scale:
            return 1.0
        if diff > eps2 * scale:
            r = 0.0
        else:
            r = 0.5 * (math.cos(math.pi * (diff - eps1 * scale) / ((eps2 - eps1) * scale)) + 1.0)
            return min(1.0, max(0.0, r))
    elif pred == gt:
        return 1.0
    if not tagged and pred and gt and equivalent(pred, gt, timeout_s):
        return 1.0
    return 0.0


def _tolerance_reason_rft(completion: str, pred: str, tagged: bool, gt: str, eps1: float, eps2: float,
                          timeout_s: float) -> float:
    """``math_accuracy_reward`` step by step (see ``math_tolerance``)."""
    r = 0.0
    a, b = _paper_float(pred), _paper_float(gt)
    if a is not None and b is not None:
        diff = abs(a - b)
        scale = abs(b)
        if diff < eps1 * scale:
            r = 1.0
        elif diff > eps2 * scale:
            r = 0.0
        else:
            den = (eps2 - eps1) * scale
            # den == 0 (gt = 0, Δ = 0): the paper's ZeroDivisionError, caught by its `except`: 0.
            r = 0.0 if den == 0.0 else 0.5 * (math.cos(math.pi * (diff - eps1 * scale) / den) + 1.0)
        if math.isnan(r):
            return 0.0  # the paper returns NaN here (and does not fall back)
    elif pred == gt:
        r = 1.0
    if r == 0.0 and not tagged:
        r = 1.0 if paper_verify(completion, gt, timeout_s) else 0.0
    return min(1.0, max(0.0, r))
