"""Task knowledge, in one place: the paper tasks, the names datasets use for them, which rewards
score each by default, and which component is its accuracy.

A dataset row's `task` (or `data.task`) names a task; `rewards:` in the config overrides the default
composition. Rewards themselves live in `verifiers`; this module only composes them.
"""

from __future__ import annotations

from typing import Any

from vrft.verifiers import RewardSpec

# The papers' compositions (docs/sources.md V3: R = R_IoU + R_conf + R_format for detection; R4:
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


def task_key(task: str, custom: set[str] | frozenset[str] = frozenset()) -> str:
    """What a row's task routes by: a task the config gives its own rewards, else the paper task
    behind the name (an unknown name is a one-line error)."""
    return task if task in custom else canonical_task(task)


def reward_routes(rewards, tasks: set[str | None], frame: str = "rel1000") -> dict[str, list[RewardSpec]]:
    """The reward composition of every task in the data (`None`: rows without a task, route "").
    `rewards`: the config's list (every task), or a list per task (others get their defaults).
    `frame`: the model's answer frame; detection rewards that do not name one get it."""
    routes: dict[str, list[RewardSpec]] = {}
    for task in tasks:
        route = task or ""
        if isinstance(rewards, dict):
            named = {ALIASES.get(k, k): v for k, v in rewards.items()}
            if task in named:
                routes[route] = list(named[task])
                continue
        elif rewards:
            routes[route] = list(rewards)
            continue
        if task is None:
            raise ValueError("rows without a task and no rewards configured: set data.task or rewards")
        routes[route] = default_rewards(task)
    return {route: [_in_frame(s, frame) for s in specs] for route, specs in routes.items()}


def _in_frame(spec: RewardSpec, frame: str) -> RewardSpec:
    """Detection rewards bound predicted coordinates by the frame (1000, or the resized pixels)."""
    if frame != "resized_pixels" or spec.name not in ("detection_iou", "detection_confidence"):
        return spec
    if "frame" in spec.options:
        return spec
    return spec.model_copy(update={"options": {**spec.options, "frame": "pixels"}})


def data_tasks(dataset, default: str | None, custom: set[str]) -> set[str | None]:
    """The task keys present in a dataset: its `task` column's values (a missing value: `default`)."""
    if "task" not in dataset.column_names:
        names = {default}
    else:
        names = {t or default for t in dataset.unique("task")}
    return {None if t is None else task_key(t, custom) for t in names}
