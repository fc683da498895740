"""The papers' released evaluation scripts' readings of an answer, for `--scoring paper` (the
default of `vrft eval`). Each function follows its script's behaviour step by step, including where
that behaviour is lenient, strict or surprising, because a reproduction is judged against the number
that script printed. vrft's own readings (the training rewards' parsers) stay the `strict` scoring.

- Detection (Visual-RFT, arXiv 2503.01785 §4.1, COCO and LVIS inference scripts): the whole response
  is rewritten first (`[[`/`]]` collapsed, newlines and every literal ", ..." deleted), then the
  `<answer>` content is cut and repaired to a JSON list; a malformed item can lose the whole answer
  or every item after it; nothing is range-checked (`parse_detections_script`).
- Counting / structure answers (Reason-RFT, arXiv 2503.20752 §4): exact match, else math-verify with
  the model's answer as gold and no delimiters added, on the whole text (`answer_score_script`).
- TRANCE (Reason-RFT §4): the items of each side in the iteration order of a Python `set` of them,
  so the score of an answer with tied greedy choices depends on the string hash seed
  (`trance_score_script`; `trance_order_bounds` gives the range over every order).

docs/evaluation.md lists what differs from the scripts all the same, and why.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from vrft.verifiers.evaluation.item_scores import trance_greedy

_ANSWER = re.compile(r"<answer>(.*?)</answer>")  # no DOTALL: the detection text has no newlines left
_ANSWER_DOTALL = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


# ---- detection -------------------------------------------------------------------------------------
@dataclass
class DetectionRead:
    """One detection answer as the released script reads it.

    `detections`: (confidence, x1, y1, x2, y2) in the 0-1000 frame, in answer order, values as JSON
    gave them (a confidence may be any JSON value: the script appends it unchecked).
    `parsed`: the answer became a non-empty JSON list. `lost_whole`: the de-duplication raised on an
    item, so nothing was kept. `stopped_at`: the index (among the de-duplicated items) of the item
    whose conversion raised: it and every later one are lost (None when none raised)."""

    detections: list[tuple[Any, float, float, float, float]] = field(default_factory=list)
    parsed: bool = False
    lost_whole: bool = False
    stopped_at: int | None = None
    lost_after_stop: int = 0


def _script_answer(completion: str) -> str:
    """The text the script hands to its JSON parser: rewrites on the whole response, the answer (or
    the whole stripped response) re-wrapped in tags, then the content between the first pair, cut
    after its last complete item and closed when it does not end in `]`."""
    text = completion.replace("[[", "[").replace("]]", "]").replace("\n", "").replace(", ...", "")
    found = _ANSWER.search(text)
    wrapped = "<answer>" + (found.group(1) if found else text).strip() + "</answer>"
    start = wrapped.index("<answer>") + len("<answer>")
    content = wrapped[start:wrapped.index("</answer>", start)]
    if not content.endswith("]"):
        cut = content.rfind("},")
        content = (content[:cut] if cut >= 0 else content) + "}]"
    return content.replace("'", '"')


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))  # bool is an int, as for the script's arithmetic


def _divisible(value: int | float) -> bool:
    """Whether `value / 1000.0` works: an int past the largest float overflows (compared exactly,
    never converted); any float, inf and NaN included, divides."""
    return isinstance(value, float) or abs(value) <= _FLOAT_MAX


_FLOAT_MAX = 1.7976931348623157e308


def parse_detections_script(completion: str) -> DetectionRead:
    """The released detection inference scripts' post-processing of one response (see the module's
    docstring). Never raises: where the script's own `try` would catch an error, the result says
    what was lost."""
    out = DetectionRead()
    if not isinstance(completion, str):
        return out
    try:
        items = json.loads(_script_answer(completion))
    except ValueError:
        return out
    if not isinstance(items, list) or not items or isinstance(items[0], str):
        return out  # indexing [0] fails or the first item is a string: no detections
    out.parsed = True
    kept: dict[tuple, Any] = {}
    try:  # de-duplication by Position over every item first: any bad item loses them all
        for item in items:
            key = tuple(item["Position"])
            hash(key)
            kept.setdefault(key, item)
    except (TypeError, KeyError, IndexError):
        out.lost_whole = True
        return out
    unique = list(kept.values())
    for i, item in enumerate(unique):
        position = item["Position"]
        if len(position) != 4 or not all(_is_number(v) and _divisible(v) for v in position):
            out.stopped_at = i  # the script's unpacking or its / 1000.0 raises here
        elif "Confidence" not in item:
            out.stopped_at = i
        if out.stopped_at is not None:
            out.lost_after_stop = len(unique) - i
            break
        x1, y1, x2, y2 = (float(v) for v in position)
        out.detections.append((item["Confidence"], x1, y1, x2, y2))
    return out


# ---- counting / structure answers ----------------------------------------------------------------
def answer_score_script(completion: str, solution: str, verify) -> float:
    """Reason-RFT's counting / GeoMath / Geometry3K score of one completion: 1.0 if the stripped
    `<answer>` content (DOTALL) equals the raw solution string (unstripped), else whether
    `verify(answer, solution)` holds; without a tag the stripped completion against the stripped
    solution, else `verify(completion, solution)` on the whole completion. `verify(gold, target)`
    is math-verify's `float(verify(parse(gold), parse(target))) > 0` with those arguments in that
    order (`verifiers.math_reward.paper_verify`); any error scores 0."""
    if not isinstance(completion, str):
        return 0.0
    solution = str(solution)
    found = _ANSWER_DOTALL.search(completion)
    try:
        if found:
            answer = found.group(1).strip()
            return 1.0 if solution == answer or verify(answer, solution) else 0.0
        if solution.strip() == completion.strip():
            return 1.0
        return 1.0 if verify(completion, solution) else 0.0
    except Exception:  # the script's own `except`: an unreadable answer scores 0
        return 0.0


# ---- TRANCE ----------------------------------------------------------------------------------------
def trance_items(completion: str, solution: str) -> tuple[list, list]:
    """Both sides' distinct `func(obj, value)` items as the script reads them: the `<answer>` content
    without DOTALL (else the whole completion), each side's items in the order a `set` of them
    iterates in this process (so under this process's string hash seed)."""
    from vrft.verifiers.rewards_spatial import _ITEM_RE

    found = _ANSWER.search(completion)
    pred = list(set(_ITEM_RE.findall((found.group(1) if found else completion).strip())))
    return pred, list(set(_ITEM_RE.findall(str(solution))))


def trance_score_script(completion: str, solution: str) -> float:
    """Reason-RFT's TRANCE partial credit in [0, 1], in the script's own (hash-seed dependent) order;
    no duplicate penalty."""
    if not isinstance(completion, str):
        return 0.0
    return trance_greedy(*trance_items(completion, solution))


def trance_order_bounds(completion: str, solution: str, most: int = 5040) -> tuple[float, float] | None:
    """The least and greatest score over every order of both sides' items (what another hash seed
    could give), or None when there are more than `most` order pairs to try."""
    if not isinstance(completion, str):
        return (0.0, 0.0)
    pred, sol = trance_items(completion, solution)
    if math.factorial(len(pred)) * math.factorial(len(sol)) > most:
        return None
    scores = [trance_greedy(p, s) for p in itertools.permutations(pred)
              for s in itertools.permutations(sol)] or [0.0]
    return min(scores), max(scores)
