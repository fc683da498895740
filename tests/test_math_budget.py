"""math-verify cannot hold a scorer: answers whose exact value is astronomically costly (towers,
huge sums/products/factorials/binomials) score 0 at once without being parsed, every call gets at
most what is left of the completion's time budget, and both count in `verifier/timeouts`."""

from __future__ import annotations

import time

import pytest

from vrft import verifiers
from vrft.verifiers import budget
from vrft.verifiers.math_reward import too_costly, warmup

COSTLY = ["9^9^9", "9^{9^{9}}", "9**9**9", "2^{10^{7}}", r"\prod_{k=1}^{10^{6}} k",
          r"\sum_{k=1}^{10^{9}} k^2", "(10^{6})!", r"\binom{10^{9}}{10^{5}}"]
CHEAP = ["2^{10}", "(9^9)^9", "10^{100}", "x^{2^{10}}", r"\sum_{k=1}^{n} k", r"\prod_{k=1}^{100} k", "100!",
         r"\binom{10}{3}", r"\frac{1}{2}"]


def ans(text: str) -> str:
    return f"<think>reasoning</think><answer>{text}</answer>"


def test_the_pre_check_tells_costly_from_cheap() -> None:
    assert all(too_costly(t) for t in COSTLY), [t for t in COSTLY if not too_costly(t)]
    assert not any(too_costly(t) for t in CHEAP), [t for t in CHEAP if too_costly(t)]


@pytest.mark.parametrize("name", ["math", "math_tolerance"])
@pytest.mark.parametrize("answer", COSTLY)
def test_costly_answers_score_zero_at_once(name: str, answer: str) -> None:
    warmup()
    budget.take_exceeded()
    # math_tolerance only asks math-verify about a completion without tags.
    completion = ans(answer) if name == "math" else f"so it is ${answer}$"
    start = time.monotonic()
    assert verifiers.get_reward(name)(completion, {"answer": "5"}) == 0.0
    assert time.monotonic() - start < 0.2  # before: the full 3 s math-verify timeout
    assert budget.take_exceeded() == 1


def test_cheap_answers_are_still_decided() -> None:
    math = verifiers.get_reward("math")
    assert math(ans("$2^{10}$"), {"answer": "1024"}) == 1.0
    assert math(ans(r"\frac{1}{2}"), {"answer": "0.5"}) == 1.0
    assert budget.take_exceeded() == 0


def test_the_completion_budget_caps_math_verify() -> None:
    math = verifiers.get_reward("math")
    budget.take_exceeded()
    with budget.completion_budget(0.0):  # spent: math-verify is not even started
        assert math(ans(r"\frac{1}{2}"), {"answer": "0.5"}) == 0.0
    assert budget.take_exceeded() == 1
    with budget.completion_budget(5.0):
        assert math(ans(r"\frac{1}{2}"), {"answer": "0.5"}) == 1.0
    assert budget.take_exceeded() == 0


def test_the_pool_counts_them_as_timeouts_and_stays_fast(ray_cluster) -> None:
    with verifiers.VerifierPool([{"name": "math"}, {"name": "format"}], num_actors=1, timeout_s=5.0) as pool:
        pool.submit("warm", ans("1"), {"answer": "1"})
        pool.gather(["warm"], timeout=120)  # the scoring process has imported math-verify
        start = time.monotonic()
        for i, answer in enumerate([*COSTLY, r"\frac{1}{2}"]):
            pool.submit(i, ans(answer), {"answer": "0.5"})
        got = pool.gather(list(range(len(COSTLY) + 1)), timeout=60)
        elapsed = time.monotonic() - start
        stats = pool.stats()
    assert [got[i]["math"] for i in range(len(COSTLY))] == [0.0] * len(COSTLY)
    assert all(got[i]["format"] == 1.0 for i in got)  # only the math component gave up
    assert got[len(COSTLY)]["math"] == 1.0
    assert stats["verifier/timeouts"] == len(COSTLY) and stats["verifier/process_restarts"] == 0
    assert elapsed < 1.0, elapsed
