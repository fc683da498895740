"""Weighted composition of rewards: ``RewardSpec`` (config) and ``CompositeReward`` (callable), plus
the papers' per-task compositions.

Every component is returned next to the weighted ``"total"`` so that each can be logged. A component
that raises (a user reward, or a built-in given a malformed ground truth) or returns a non-finite
value scores 0 and is reported as an error; it never takes the other components down.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from verifiers.registry import RESERVED_KEYS, get_reward, one_line


class RewardSpec(BaseModel):
    """One reward of a task: a registered name or ``"package.module:function"``, its weight in the
    total, and options passed to it (validated by ``get_reward``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    weight: float = 1.0
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("weight")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("weight must be finite")
        return v


# The papers' compositions (papers.md §1.3: R = R_IoU + R_conf + R_format for detection; §2.4:
# accuracy + format with equal weights for Reason-RFT).
TASK_REWARDS: dict[str, list[dict[str, Any]]] = {
    "detection": [{"name": "detection_iou"}, {"name": "detection_confidence"}, {"name": "format"}],
    "classification": [{"name": "classification"}, {"name": "format"}],
    "grounding": [{"name": "grounding_giou"}, {"name": "format"}],
    "counting": [{"name": "counting"}, {"name": "format"}],
    "structure": [{"name": "math"}, {"name": "format"}],
    "spatial": [{"name": "spatial_transform", "options": {"mode": "exact"}}, {"name": "format"}],
}


def task_rewards(task: str) -> list[RewardSpec]:
    """The reward specs of a paper task (``detection``, ``classification``, ``grounding``,
    ``counting``, ``structure``, ``spatial``)."""
    try:
        return [RewardSpec(**d) for d in TASK_REWARDS[task]]
    except KeyError:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASK_REWARDS)})") from None


def as_specs(specs: Iterable[RewardSpec | dict[str, Any]]) -> list[RewardSpec]:
    """Accept ``RewardSpec``s or plain dicts (from YAML)."""
    out = []
    for s in specs:
        if isinstance(s, RewardSpec):
            out.append(s)
        elif isinstance(s, dict):
            try:
                out.append(RewardSpec.model_validate(s))
            except Exception as e:
                raise ValueError(f"bad reward spec {s!r}: {one_line(e)}") from None
        else:
            raise ValueError(f"bad reward spec {s!r}: expected a RewardSpec or a dict")
    return out


def component_keys(specs: Sequence[RewardSpec | dict[str, Any]]) -> list[str]:
    """One key per component: the reward name, ``name#2``, ``name#3``… for repeats."""
    keys: list[str] = []
    counts: dict[str, int] = {}
    for s in specs:
        name = s.name if isinstance(s, RewardSpec) else s["name"]
        counts[name] = counts.get(name, 0) + 1
        keys.append(name if counts[name] == 1 else f"{name}#{counts[name]}")
    return keys


class CompositeReward:
    """``(completion, ground_truth) -> {component: score, ..., "total": weighted sum}``.

    All names and options are resolved at construction: a bad config raises a one-line
    ``ValueError`` naming the bad reward.
    """

    def __init__(self, specs: Sequence[RewardSpec | dict[str, Any]]) -> None:
        self.specs = as_specs(specs)
        if not self.specs:
            raise ValueError("a task needs at least one reward")
        for s in self.specs:
            if s.name in RESERVED_KEYS:
                raise ValueError(f"reward name {s.name!r} is reserved")
        self.keys = component_keys(self.specs)
        self._fns = [get_reward(s.name, **s.options) for s in self.specs]
        self._weights = [float(s.weight) for s in self.specs]
        self._parts = list(zip(self.keys, self._fns, self._weights, strict=True))

    def zeros(self) -> dict[str, float]:
        """The score of a completion that could not be scored (timeout, lost actor)."""
        out = dict.fromkeys(self.keys, 0.0)
        out["total"] = 0.0
        return out

    def score(self, completion: str, ground_truth: dict) -> tuple[dict[str, float], list[str]]:
        """Scores and the error messages of components that failed (each scored 0)."""
        out: dict[str, float] = {}
        errors: list[str] = []
        total = 0.0
        for key, fn, weight in self._parts:
            try:
                v = fn(completion, ground_truth)
                v = float(v)
                if not math.isfinite(v):
                    raise ValueError(f"returned {v}")
            except Exception as e:
                errors.append(one_line(f"{key}: {type(e).__name__}: {e}"))
                v = 0.0
            out[key] = v
            total += weight * v
        out["total"] = total
        return out, errors

    def __call__(self, completion: str, ground_truth: dict) -> dict[str, float]:
        return self.score(completion, ground_truth)[0]
