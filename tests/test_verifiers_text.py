"""Table-driven tests of format, classification, counting, choice, spatial_transform, math and
math_tolerance, with the papers' own edge cases."""

from __future__ import annotations

import concurrent.futures
import math
import time

import pytest

from vrft import verifiers


def ans(text: str) -> str:
    return f"<think>reasoning</think><answer>{text}</answer>"


def run(name: str, completion: str, answer: str, **options: object) -> float:
    return verifiers.get_reward(name, **options)(completion, {"answer": answer})


# ---- format -------------------------------------------------------------------------------------

FORMAT = [
    ("<think>a</think><answer>b</answer>", 1.0),
    ("<think>a</think>\n\n <answer>b</answer>", 1.0),
    ("<think>line1\nline2</think><answer>x\ny</answer>", 1.0),
    ("<think></think><answer></answer>", 1.0),
    ("<think>a</think><answer>b</answer><answer>c</answer>", 1.0),  # lazy .*? still full-matches
    (" <think>a</think><answer>b</answer>", 0.0),  # nothing before <think>
    ("<think>a</think><answer>b</answer>\n", 0.0),  # nothing after </answer>
    ("<think>a</think> so <answer>b</answer>", 0.0),
    ("<think>a<answer>b</answer>", 0.0),
    ("<answer>b</answer>", 0.0),
    ("", 0.0),
]


@pytest.mark.parametrize(("completion", "want"), FORMAT)
def test_format_table(completion: str, want: float) -> None:
    assert verifiers.get_reward("format")(completion, {}) == want


# ---- classification (Visual-RFT) -----------------------------------------------------------------

CLASSIFICATION = [
    # (completion, ground truth, options, expected)
    (ans("Pink Primrose"), "pink_primrose", {}, 1.0),
    (ans("pink primrose"), "<answer>pink primrose</answer>", {}, 1.0),
    (ans("It is a pink primrose."), "pink primrose", {}, 1.0),
    (ans("rose"), "lenten rose", {}, 0.0),  # strict: the answer must contain the class
    (ans("rose"), "lenten rose", {"mode": "visual_rft"}, 1.0),  # paper: either contains the other
    (ans(""), "pink primrose", {}, 0.0),  # empty answer (the reward hack of issue #79)
    (ans(""), "pink primrose", {"mode": "visual_rft"}, 1.0),
    (ans("e"), "pink primrose", {"mode": "visual_rft"}, 1.0),
    (ans("pink primrose or rose or daisy"), "pink primrose", {}, 0.0),  # several classes
    (ans("pink primrose or rose or daisy"), "pink primrose", {"mode": "visual_rft"}, 1.0),
    (ans("pink primrose, rose"), "pink primrose", {}, 0.0),
    # the hole the demo's rollout records showed: an <answer> opened inside <think> spans the tags
    ("<think>x<answer>'Confidence</think><answer>blue</answer>", "blue", {}, 0.0),
    ("<think>x<answer>'Confidence</think><answer>blue</answer>", "blue", {"mode": "visual_rft"}, 1.0),
    (ans("daisy"), "pink primrose", {}, 0.0),
    (ans("Salt and Pepper"), "salt and pepper", {}, 1.0),  # a separator inside the class name
    (ans("Labrador Retriever"), "labrador retriever", {}, 1.0),  # "or" inside a word
    (ans("Boeing 737-800"), "737-800", {}, 1.0),
    (ans("F/A-18"), "F/A-18", {}, 1.0),
    (ans("lenten rose"), "rose", {"classes": ["rose", "lenten rose"]}, 0.0),  # names another class
    (ans("lenten rose"), "lenten rose", {"classes": ["rose", "lenten rose"]}, 1.0),
    ("pink primrose", "pink primrose", {}, 0.0),  # strict needs the <answer> tag
    ("the flower is a pink primrose", "pink primrose", {"mode": "visual_rft"}, 1.0),  # paper fallback
    # No DOTALL in the paper: a multi-line answer falls back to the whole completion.
    ("<think>hmm</think><answer>\ndaisy\n</answer>", "daisy", {"mode": "visual_rft"}, 1.0),
]


@pytest.mark.parametrize(("completion", "gt", "options", "want"), CLASSIFICATION)
def test_classification_table(completion: str, gt: str, options: dict, want: float) -> None:
    assert run("classification", completion, gt, **options) == want


# ---- counting (Reason-RFT) -----------------------------------------------------------------------

COUNTING = [
    (ans("3"), "3", {}, 1.0),
    (ans(" 3 \n"), "3", {}, 1.0),
    (ans("3"), "<answer>3</answer>", {}, 1.0),
    (ans("3.0"), "3", {}, 0.0),
    (ans("3.0"), "3", {"numeric": True}, 1.0),
    (ans("three"), "3", {"numeric": True}, 1.0),
    (ans("Three."), "3", {"numeric": True}, 1.0),
    (ans("4"), "3", {"numeric": True}, 0.0),
    (ans("3 or 4"), "3", {"numeric": True}, 0.0),
    (ans(""), "3", {}, 0.0),
    (ans("nan"), "3", {"numeric": True}, 0.0),
    ("3", "3", {}, 1.0),  # no tag: the stripped completion is the answer
    ("There are 3 objects in total.", "3", {}, 1.0),  # no tag: math-verify fallback (paper)
    ("There are 3 objects in total.", "3", {"fallback": False}, 0.0),
    # A tagged wrong answer never falls back, even if the reasoning mentions the right number.
    ("<think>maybe 3</think><answer>4</answer>", "3", {}, 0.0),
]


@pytest.mark.parametrize(("completion", "gt", "options", "want"), COUNTING)
def test_counting_table(completion: str, gt: str, options: dict, want: float) -> None:
    assert run("counting", completion, gt, **options) == want


# ---- multiple choice ----------------------------------------------------------------------------

CHOICE = [
    (ans("B"), "B", 1.0), (ans("(B)"), "B", 1.0), (ans("B."), "B", 1.0), (ans("b"), "B", 1.0),
    (ans("Answer: B"), "B", 1.0), (ans("The answer is (B)."), "B", 1.0), (ans("B. 45°"), "B", 1.0),
    (ans("(B) 45 degrees"), "B", 1.0), (ans("[B]"), "B", 1.0), (ans("B"), "(B)", 1.0),
    (ans("A or B"), "B", 0.0), (ans("(B) or (C)"), "B", 0.0), (ans("B, C"), "B", 0.0),
    (ans("I think B"), "B", 0.0), (ans("C"), "B", 0.0), (ans(""), "B", 0.0), ("B", "B", 1.0),
]


@pytest.mark.parametrize(("completion", "gt", "want"), CHOICE)
def test_choice_table(completion: str, gt: str, want: float) -> None:
    assert run("choice", completion, gt) == want


def test_choice_ground_truth_must_be_a_letter() -> None:
    with pytest.raises(ValueError):
        run("choice", ans("B"), "forty-five")


# ---- spatial transformation (Reason-RFT TRANCE) --------------------------------------------------

GT_T = "change_color(1, 'red') change_size(2, 'large')"
SPATIAL = [
    # (answer, expected exact, expected partial)
    (GT_T, 1.0, 1.0),
    ("change_size(2, 'large'), change_color(1, 'red')", 1.0, 1.0),  # order does not matter
    ("change_color(1, red) change_size(2, large)", 1.0, 1.0),  # quotes are optional in the regex
    # One exact, one (func, obj) match: item = 1/2 → exact .5, partial .5 + .5·.5.
    ("change_color(1, 'red') change_size(2, 'small')", 0.5, 0.75),
    ("change_color(3, 'red')", 0.0, 0.25),  # (func, value): .5 · item 1/2
    ("change_color(3, 'blue')", 0.0, 0.125),  # func only: .25 · item 1/2
    ("change_shape(1, 'cube')", 0.0, 0.0),
    # Duplicate penalty: 1 unique of 2 → p = .5, item = .5 / max(1, 2) = .25.
    ("change_color(1, 'red') change_color(1, 'red')", 0.25, 0.25),
    # More predictions than ground truth: item = 1/3.
    (GT_T + " change_shape(3, 'cube')", 2 / 3, 2 / 3),
    ("I cannot tell", 0.0, 0.0),
    ("", 0.0, 0.0),
]


@pytest.mark.parametrize(("answer", "want_exact", "want_partial"), SPATIAL)
def test_spatial_table(answer: str, want_exact: float, want_partial: float) -> None:
    assert run("spatial_transform", ans(answer), GT_T) == pytest.approx(want_exact)
    assert run("spatial_transform", ans(answer), GT_T, mode="partial") == pytest.approx(want_partial)


def test_spatial_greedy_passes_are_ordered() -> None:
    # p1 could take g1 by (func, obj) in pass 2; p2 then gets g2 by (func, value) in pass 3.
    gt = "change_color(1, 'red') change_color(2, 'blue')"
    pred = "change_color(1, 'green') change_color(3, 'blue')"
    assert run("spatial_transform", ans(pred), gt, mode="partial") == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)


# ---- math (Reason-RFT structure perception) ------------------------------------------------------

MATH = [
    (ans("0.5"), "0.5", 1.0),
    (ans("\\frac{1}{2}"), "0.5", 1.0),
    (ans("$\\frac{1}{2}$"), "0.5", 1.0),
    (ans("2\\sqrt{3}"), "\\sqrt{12}", 1.0),
    (ans("0.6"), "0.5", 0.0),
    (ans(""), "0.5", 0.0),
    (ans("B"), "B", 1.0),
    ("so the answer is $\\frac{1}{2}$", "0.5", 1.0),
]


@pytest.mark.parametrize(("completion", "gt", "want"), MATH)
def test_math_table(completion: str, gt: str, want: float) -> None:
    assert run("math", completion, gt) == want


def test_math_works_off_the_main_thread() -> None:
    # math-verify's own SIGALRM timeout raises off the main thread; ours runs it in a helper process.
    cases = MATH[:5]
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        got = list(ex.map(lambda c: run("math", c[0], c[1]), cases))
    assert got == [c[2] for c in cases]


@pytest.mark.parametrize("where", ["main", "thread"])
def test_math_timeout_holds_everywhere(where: str) -> None:
    # Deciding 9^9^9^9 = 9^9^9^8 makes sympy evaluate a tower of powers: it never finishes.
    slow = (ans("9^9^9^9"), "9^9^9^8")
    fast = (ans("\\frac{1}{2}"), "0.5")

    def go() -> tuple[float, float, float]:
        run("math", *fast)  # warm: helper process started, math-verify imported
        t0 = time.monotonic()
        r = run("math", *slow, timeout_s=0.5)
        return r, time.monotonic() - t0, run("math", *fast)

    if where == "main":
        r, dt, after = go()
    else:
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            r, dt, after = ex.submit(go).result(timeout=120)
    assert r == 0.0 and dt < 3.0
    assert after == 1.0  # the helper recovered


TOLERANCE = [
    (ans("0.5"), "0.5", 1.0),
    (ans("0.52"), "0.5", 1.0),  # Δ = .02 < ε1·|gt| = .025
    (ans("0.55"), "0.5", 0.5 * (math.cos(math.pi / 3) + 1)),  # (Δ - .025) / .075 = 1/3
    (ans("0.7"), "0.5", 0.0),  # Δ > ε2·|gt|
    (ans("0"), "0", 1.0),  # the paper divides 0 by 0 here and pays 0
    (ans("0.001"), "0", 0.0),
    (ans("nan"), "0.5", 0.0),  # the paper's float("nan") gives a NaN reward
    (ans("inf"), "0.5", 0.0),
    (ans("abc"), "abc", 1.0),  # non-numeric: exact match
    (ans("5e-1"), "0.5", 1.0),
]


@pytest.mark.parametrize(("completion", "gt", "want"), TOLERANCE)
def test_math_tolerance_table(completion: str, gt: str, want: float) -> None:
    assert run("math_tolerance", completion, gt) == pytest.approx(want)


def test_math_tolerance_epsilons_are_options() -> None:
    assert run("math_tolerance", ans("0.55"), "0.5", eps1=0.2, eps2=0.5) == 1.0
    with pytest.raises(ValueError, match="eps1 < eps2"):
        verifiers.get_reward("math_tolerance", eps1=0.5, eps2=0.1)
