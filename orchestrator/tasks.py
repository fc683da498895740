"""Tasks: which rewards score them by default (verifiers.task_rewards holds the papers'
compositions) and which component is the task's accuracy."""

from __future__ import annotations

from verifiers import RewardSpec, task_rewards

# Dataset task names that are a paper task under another name.
_ALIASES = {"color": "classification", "math": "structure", "spatial_transform": "spatial"}


def default_rewards(task: str) -> list[RewardSpec]:
    return task_rewards(_ALIASES.get(task, task))


def accuracy_component(specs: list[RewardSpec]) -> str | None:
    """The first component that is not the format reward: what 'accuracy' means for the task."""
    return next((s.name for s in specs if s.name != "format"), None)
