"""User rewards ("package.module:function") used by the pool tests, and the tests of how they load.

The pool's scoring processes import this module by name, so it must stay light (stdlib only at the
top) and its rewards must be deterministic functions of their input.
"""

from __future__ import annotations

import os
import re
import time

import pytest

MODULE = __name__


def echo_value(completion: str, ground_truth: dict) -> float:
    """The ground truth's "value": lets a test check that each key got its own result."""
    return float(ground_truth["value"])


def parity_if_green(completion: str, ground_truth: dict) -> float:
    """For the DAPO loop test: varies within a group (text length parity) only for "green" prompts;
    every other group scores all 0, so dynamic sampling drops it."""
    return float(len(completion) % 2) if ground_truth.get("answer") == "green" else 0.0


def boxes_plus_ten(completion: str, ground_truth: dict) -> float:
    """10 + the number of ground-truth boxes: only a detection row's typed truth scores (mixed-task test)."""
    return 10.0 + len(ground_truth["boxes"])


def answer_number(completion: str, ground_truth: dict) -> float:
    """The counting answer itself: only a counting row's typed truth scores (mixed-task test)."""
    return float(ground_truth["answer"])


def slow_echo(completion: str, ground_truth: dict, delay: float = 0.02) -> float:
    time.sleep(delay)
    return float(ground_truth["value"])


def misbehave(completion: str, ground_truth: dict) -> float:
    """Does what the completion asks: hang in Python, in C (regex engine, sleep), raise, return NaN
    or a string, or kill its own process."""
    if completion == "HANG_PY":
        while True:
            pass
    if completion == "HANG_REGEX":
        re.match(r"(a+)+$", "a" * 64 + "b")  # exponential backtracking, inside the C regex engine
    if completion == "HANG_SLEEP":
        time.sleep(3600)
    if completion == "RAISE":
        raise RuntimeError("boom")
    if completion == "NAN":
        return float("nan")
    if completion == "STRING":
        return "1.0"  # type: ignore[return-value]
    if completion == "EXIT":
        os._exit(3)
    return 0.5


def with_scale(completion: str, ground_truth: dict, *, scale: float = 1.0) -> float:
    return min(1.0, len(completion) / scale)


def two_args_only(completion: str) -> float:
    return 0.0


NOT_CALLABLE = 3


# ---- loading tests --------------------------------------------------------------------------------


def test_user_reward_loads_and_binds_options() -> None:
    from vrft import verifiers

    fn = verifiers.get_reward(f"{MODULE}:with_scale", scale=10.0)
    assert fn("abcde", {}) == 0.5
    assert fn("a" * 20, {}) == 1.0


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        (f"{MODULE}:nope", {}, "has no"),
        (f"{MODULE}:NOT_CALLABLE", {}, "not callable"),
        (f"{MODULE}:two_args_only", {}, "must accept"),
        (f"{MODULE}:with_scale", {"sigma": 1}, "must accept"),
        ("no_such_package_xyz.mod:f", {}, "cannot import"),
        (":f", {}, "package.module:function"),
    ],
)
def test_bad_user_reward_is_a_one_line_value_error(name: str, options: dict, fragment: str) -> None:
    from vrft import verifiers

    with pytest.raises(ValueError) as info:
        verifiers.CompositeReward([verifiers.RewardSpec(name=name, options=options)])
    msg = str(info.value)
    assert fragment in msg and name in msg and "\n" not in msg


@pytest.mark.parametrize(("completion", "error"), [("NAN", "nan"), ("STRING", "str"), ("RAISE", "boom")])
def test_misbehaving_user_reward_scores_zero_with_an_error(completion: str, error: str) -> None:
    from vrft import verifiers

    comp = verifiers.CompositeReward([{"name": f"{MODULE}:misbehave", "weight": 2.0}, {"name": "format"}])
    scores, errors = comp.score(completion, {})
    assert scores == {f"{MODULE}:misbehave": 0.0, "format": 0.0, "total": 0.0}
    assert len(errors) == 1 and error in errors[0]
    ok, errors = comp.score("fine", {})
    assert ok[f"{MODULE}:misbehave"] == 0.5 and ok["total"] == 1.0 and errors == []
