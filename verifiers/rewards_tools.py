"""Rewards that read a multi-turn trajectory (rollout/turns.py) as well as its answer.

The orchestrator hands a trajectory's facts to the verifiers inside the ground truth, under
`TRAJECTORY_KEY`: `{"turns": int, "tool_calls": int, "tool_errors": int, "cut_by_turns": bool}`.
A completion sampled without tools has no such key, and these rewards score it 0.
"""

from __future__ import annotations

import functools
from typing import Any

from vrft.verifiers.registry import get_reward, register, unit_float

TRAJECTORY_KEY = "trajectory"


def _reward_name(v: Any) -> str:
    if not isinstance(v, str) or not v or ":" in v:
        raise ValueError(f"must name a built-in reward, got {v!r}")
    get_reward(v)  # an unknown name fails here, at config load
    return v


@functools.cache
def _inner(name: str):
    return get_reward(name)


@register("tool_bonus", 0.0, 1.0, options={"of": _reward_name, "threshold": unit_float})
def tool_bonus(completion: str, ground_truth: dict, *, of: str = "classification", threshold: float = 1.0) -> float:
    """1 when the answer is right — the `of` reward scores at least `threshold` — and the trajectory
    made at least one tool call that did not fail; else 0.

    Paid only with a right answer, as DeepEyes' tool reward is (arXiv 2505.14362): a bonus for
    calling tools alone teaches calling them whether or not they help, and a bonus for a failed call
    teaches malformed calls. Weight it below the accuracy reward (DeepEyes: accuracy first)."""
    facts = ground_truth.get(TRAJECTORY_KEY)
    if not isinstance(facts, dict):
        return 0.0
    useful = int(facts.get("tool_calls", 0)) - int(facts.get("tool_errors", 0))
    if useful <= 0:
        return 0.0
    return 1.0 if _inner(of)(completion, ground_truth) >= threshold else 0.0
