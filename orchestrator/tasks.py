"""Tasks: which rewards score them by default (as the papers do) and which one is the accuracy."""

from __future__ import annotations

from verifiers import RewardSpec

_DEFAULTS: dict[str, list[tuple[str, dict]]] = {
    # Visual-RFT: R = R_IoU + R_conf + R_format for detection; accuracy + format otherwise.
    "detection": [("detection_iou", {}), ("detection_confidence", {}), ("format", {})],
    "classification": [("classification", {}), ("format", {})],
    "color": [("classification", {}), ("format", {})],
    "grounding": [("grounding_giou", {}), ("format", {})],
    # Reason-RFT: accuracy + format, equal weights.
    "counting": [("counting", {}), ("format", {})],
    "math": [("math", {}), ("format", {})],
    "choice": [("choice", {}), ("format", {})],
    "spatial_transform": [("spatial_transform", {"mode": "exact"}), ("format", {})],
}


def default_rewards(task: str) -> list[RewardSpec]:
    if task not in _DEFAULTS:
        raise ValueError(f"unknown task {task!r} and no rewards configured; "
                         f"known tasks: {', '.join(sorted(_DEFAULTS))}")
    return [RewardSpec(name=name, weight=1.0, options=opts) for name, opts in _DEFAULTS[task]]


def accuracy_component(specs: list[RewardSpec]) -> str | None:
    """The first component that is not the format reward: what 'accuracy' means for the task."""
    return next((s.name for s in specs if s.name != "format"), None)
