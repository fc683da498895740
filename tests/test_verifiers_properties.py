"""Property-based tests (hypothesis): every reward returns a finite float in its documented range and
raises nothing, for any string and any valid ground truth; the linear-time parsers agree exactly with
the papers' regexes; Hungarian matching never scores below greedy."""

from __future__ import annotations

import json
import math
import re
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrft import verifiers
from vrft.verifiers.answers import check_format, extract_answer
from vrft.verifiers.rewards_detection import _match_greedy, _match_hungarian, box_iou
from vrft.verifiers.rewards_spatial import _ITEM_RE

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces the parsers care about, so that random strings reach deep into every code path.
FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "<answer", "answer>", "\n", " ", "\t", "\u2003",
    "[", "]", "[[", "]]", "{", "}", "},", "'", '"', ",", ":", "'Position': ", "'Confidence': ",
    "[0, 0, 100, 100]", "[200, 200, 300, 300]", "NaN", "Infinity", "-Infinity", "1e999", "-1", "0.5",
    "1000", "1001", "true", "null", "No Objects", "(", ")", "(10,10),(90,90)", "( 1 , 2 )", "99999999999",
    "change_color(1, 'red')", "change_size(2, large)", "change_color", "A", "B.", "(C)", "Answer: D",
    " or ", "and", "three", "3", "3.0", "\\frac{1}{2}", "$", "\\sqrt{2}", "pink primrose", "_",
    "\ud800", "\udfff", "\x00", "é",
]
token_text = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=200)
completions = st.one_of(token_text, any_text)

coord = st.integers(0, 1000)


@st.composite
def boxes(draw: st.DrawFn) -> list[int]:
    x1, x2 = sorted((draw(coord), draw(coord)))
    y1, y2 = sorted((draw(coord), draw(coord)))
    return [x1, y1, x2, y2]


answers = st.one_of(st.text(max_size=40), st.sampled_from(["3", "0.5", "B", "pink primrose", "0",
                                                           "change_color(1, 'red') change_size(2, 'large')"]))


@st.composite
def ground_truths(draw: st.DrawFn, name: str) -> dict:
    if name == "choice":
        return {"answer": draw(st.sampled_from("ABCDE")) + draw(st.sampled_from(["", ".", ")"]))}
    if name.startswith("detection"):
        return {"boxes": draw(st.lists(boxes(), max_size=8))}
    if name.startswith("grounding"):
        return {"box": draw(boxes())}
    return {"answer": draw(answers)}


def _check_range(name: str, completion: str, gt: dict) -> None:
    info = verifiers.reward_info(name)
    r = verifiers.get_reward(name)(completion, gt)
    assert type(r) is float and math.isfinite(r), (name, r)
    assert info.low <= r <= info.high, (name, r)


FAST_REWARDS = [n for n in verifiers.list_rewards() if n not in ("math", "math_tolerance", "counting")]


@FAST
@given(data=st.data(), completion=completions)
def test_fast_rewards_are_finite_and_in_range(data: st.DataObject, completion: str) -> None:
    for name in FAST_REWARDS:
        _check_range(name, completion, data.draw(ground_truths(name)))


@SLOW
@given(data=st.data(), completion=completions)
def test_math_backed_rewards_are_finite_and_in_range(data: st.DataObject, completion: str) -> None:
    for name in ("math", "math_tolerance", "counting"):
        _check_range(name, completion, data.draw(ground_truths(name)))


def test_every_reward_is_covered() -> None:
    assert set(FAST_REWARDS) | {"math", "math_tolerance", "counting"} == set(verifiers.list_rewards())


# ---- structured detection answers ---------------------------------------------------------------

numbers = st.one_of(coord, st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                    st.booleans(), st.none(), st.text(max_size=3))


@st.composite
def detection_answers(draw: st.DrawFn) -> str:
    items = draw(st.lists(st.fixed_dictionaries({
        "Position": st.one_of(boxes(), st.lists(numbers, max_size=5)),
        "Confidence": st.one_of(st.floats(0, 1), numbers),
    }), max_size=12))
    text = json.dumps(items)  # writes NaN / Infinity as the model would
    if draw(st.booleans()):
        text = text.replace('"', "'")
    cut = draw(st.integers(0, len(text)))
    return "<think>x</think><answer>" + (text if draw(st.booleans()) else text[:cut]) + "</answer>"


@FAST
@given(completion=detection_answers(), gt=st.lists(boxes(), max_size=10),
       matching=st.sampled_from(["greedy", "hungarian"]))
def test_detection_on_structured_answers(completion: str, gt: list, matching: str) -> None:
    for name in ("detection_iou", "detection_confidence"):
        r = verifiers.get_reward(name, matching=matching)(completion, {"boxes": gt})
        assert math.isfinite(r) and 0.0 <= r <= 1.0


@FAST
@given(preds=st.lists(st.tuples(st.floats(0, 1), *([coord] * 4)), max_size=8), gts=st.lists(boxes(), max_size=8))
def test_hungarian_never_below_greedy(preds: list, gts: list) -> None:
    preds = [(c, min(a, b), min(d, e), max(a, b), max(d, e)) for c, a, d, b, e in preds]
    g_sum, _ = _match_greedy(preds, [tuple(b) for b in gts])
    h_sum, _ = _match_hungarian(preds, [tuple(b) for b in gts])
    assert h_sum >= g_sum - 1e-9


@FAST
@given(a=boxes(), b=boxes())
def test_box_iou_is_symmetric_and_bounded(a: list, b: list) -> None:
    assert 0.0 <= box_iou(a, b) <= 1.0
    assert box_iou(a, b) == box_iou(b, a)


# ---- the linear-time parsers are the papers' regexes --------------------------------------------

PAPER_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
PAPER_ITEMS = re.compile(r"(\w+)\((\w+),\s*'?(\w+)'?\)")
tag_soup = st.lists(st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "\n", " ", "x", "\u2003",
                                     "<", ">", "/"]), max_size=30).map("".join)


@settings(max_examples=600, deadline=None)
@given(text=tag_soup)
def test_format_check_equals_the_paper_regex(text: str) -> None:
    assert check_format(text) == bool(PAPER_FORMAT.fullmatch(text))


@settings(max_examples=600, deadline=None)
@given(text=tag_soup)
def test_answer_extraction_equals_the_paper_regex(text: str) -> None:
    for flags, dotall in ((re.DOTALL, True), (0, False)):
        m = re.search(r"<answer>(.*?)</answer>", text, flags)
        assert extract_answer(text, dotall) == (m.group(1) if m else None)


@settings(max_examples=500, deadline=None)
@given(text=st.lists(st.sampled_from(["f", "_", "1", "(", ")", ",", " ", "'", "a(", "b,", "ab"]), max_size=30)
       .map("".join))
def test_item_regex_equals_the_paper_regex(text: str) -> None:
    assert _ITEM_RE.findall(text) == PAPER_ITEMS.findall(text)


# ---- adversarial inputs stay fast ---------------------------------------------------------------

BAIT = [
    "<think>" + "</think><answer>" * 20000,  # O(n²) for re.fullmatch
    "<answer>" * 30000,
    "<answer>\n" * 30000 + "</answer>",
    "a" * 300000 + "(",  # O(n²) for the paper's TRANCE findall
    "<answer>" + "(" + " " * 100000 + "1" * 100000 + "</answer>",
    "<answer>" + "[" * 60000 + "]" * 60000 + "</answer>",  # deep JSON
    "<answer>" + "[{'Position': [1, 2, 3, 4], 'Confidence': 0.5}, " * 2000 + "</answer>",
    "x" * 2_000_000,  # beyond MAX_COMPLETION_CHARS
]


def test_adversarial_inputs_are_fast() -> None:
    gts = {"boxes": [[0, 0, 10, 10]], "box": [0, 0, 10, 10], "answer": "A"}
    for name in FAST_REWARDS:
        fn = verifiers.get_reward(name)
        for text in BAIT:
            t0 = time.perf_counter()
            r = fn(text, gts)
            assert math.isfinite(r)
            assert time.perf_counter() - t0 < 0.5, (name, text[:30])


def test_paper_regex_is_the_slow_one() -> None:
    # Why answers.check_format exists: on bait the paper's regex is quadratic, ours linear.
    bait = "<think>" + "</think><answer>" * 1000
    t0 = time.perf_counter()
    assert PAPER_FORMAT.fullmatch(bait) is None
    slow = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert not check_format(bait)
    fast = time.perf_counter() - t0
    assert fast * 100 < slow
