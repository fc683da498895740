"""Task knowledge, in one place: the paper tasks, the names datasets use for them, which rewards
score each by default, and which component is its accuracy.

A dataset row's `task` (or `data.task`) names a task; `rewards:` in the config overrides the default
composition. Rewards themselves live in `verifiers`; this module only composes them.
"""

from __future__ import annotations

from typing import Any

from verifiers import RewardSpec

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

# Dataset task names that are a paper task under another name (the synthetic colour task is a
# classification; Reason-RFT's scripts name their tasks clevr-math, geomath and trance-only-full).
ALIASES = {"color": "classification", "math": "structure", "spatial_transform": "spatial",
           "clevr-math": "counting", "geomath": "structure", "trance": "spatial", "trance-only-full": "spatial",
           "lisa": "grounding"}


def canonical_task(task: str) -> str:
    """The paper task a dataset's task name stands for; an unknown name is a one-line error."""
    name = ALIASES.get(task, task)
    if name not in TASK_REWARDS:
        known = ", ".join([*TASK_REWARDS, *ALIASES])
        raise ValueError(f"unknown task {task!r} (known: {known})")
    return name


def default_rewards(task: str) -> list[RewardSpec]:
    return [RewardSpec(**spec) for spec in TASK_REWARDS[canonical_task(task)]]


def accuracy_component(specs: list[RewardSpec]) -> str | None:
    """The first component that is not the format reward: what 'accuracy' means for the task."""
    return next((s.name for s in specs if s.name != "format"), None)


def run_rewards(rewards: list[RewardSpec], task: str | None, dataset) -> list[RewardSpec]:
    """The run's rewards: the config's, else the default of `task` (`data.task`, else the dataset's
    first row's `task`)."""
    if rewards:
        return list(rewards)
    if task is None and "task" in dataset.column_names:
        task = dataset[0].get("task")
    if task is None:
        raise ValueError("no rewards configured and the dataset names no task: set data.task or rewards")
    return default_rewards(task)
