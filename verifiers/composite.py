"""Weighted composition of rewards: ``RewardSpec`` (config) and ``CompositeReward`` (callable).
Which rewards a task uses is the orchestrator's knowledge (``orchestrator/core/tasks.py``).

Every component is returned next to the weighted ``"total"`` so that each can be logged. A component
that raises (a user reward, or a built-in given a malformed ground truth) or returns a non-finite
value scores 0 and is reported as an error; it never takes the other components down.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vrft.verifiers.registry import RESERVED_KEYS, get_reward, one_line


class RewardSpec(BaseModel):
    """One reward of a task: a registered name or ``"package.module:function"``, its weight in the
    total, and options passed to it (validated by ``get_reward``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="a registered reward name or package.module:function")
    weight: float = Field(1.0, description="its weight in the total")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword options passed to the reward")

    @field_validator("weight")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("weight must be finite")
        return v



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


Routes = Mapping[str, Sequence[RewardSpec | dict[str, Any]]]


def as_routes(specs: Sequence[RewardSpec | dict[str, Any]] | Routes) -> dict[str, list[RewardSpec]]:
    """One composition (a list: the route ``""``) or several by route name (the orchestrator routes
    each completion by its row's task)."""
    if isinstance(specs, Mapping):
        return {str(route): as_specs(s) for route, s in specs.items()}
    return {"": as_specs(specs)}


class RoutedReward:
    """Several compositions, each completion scored by the one its ``route`` names."""

    def __init__(self, specs: Sequence[RewardSpec | dict[str, Any]] | Routes) -> None:
        self.routes = {route: CompositeReward(s) for route, s in as_routes(specs).items()}

    def zeros(self, route: str = "") -> dict[str, float]:
        composite = self.routes.get(route)
        return composite.zeros() if composite is not None else {"total": 0.0}

    def score(self, completion: str, ground_truth: dict, route: str = "") -> tuple[dict[str, float], list[str]]:
        composite = self.routes.get(route)
        if composite is None:
            return {"total": 0.0}, [f"no rewards for route {route!r} (routes: {sorted(self.routes)})"]
        return composite.score(completion, ground_truth)
