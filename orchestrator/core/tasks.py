"""Task knowledge, in one place: one `Task` record per paper task, registered by name.

A record holds what vrft knows of a task: the names datasets give it, the rewards that score it by
default (and so which component is its accuracy), where a released row keeps its answer and how to
parse it, the answer a perfect completion gives, whether and how its rows and answers carry boxes,
the paper's prompt template, how a k-shot subset counts its rows, and the alarms only it raises.
Code above looks a task up (`get_task`, `find_task`) instead of branching on its name.

A dataset row's `task` (or `data.task`) names a task; `rewards:` in the config overrides the default
composition, and a name that is no paper task is the user's own: its rows bring a `ground_truth`
column and its rewards come from the config. Rewards themselves live in `verifiers`; a record only
composes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vrft.orchestrator.core.boxes import (
    Box,
    detection_answer_boxes,
    detection_truth_boxes,
    grounding_answer_boxes,
    grounding_truth_boxes,
)
from vrft.orchestrator.core.frames import box_to_frame, boxes_to_frame
from vrft.orchestrator.core.ground_truth import (
    PERFECT_THOUGHT,
    GroundTruthError,
    answer_class,
    check_answer,
    check_detection,
    check_grounding,
    check_spatial,
    detection_answer,
    detection_class,
    explicit_truth,
    grounding_answer,
    parse_answer,
    parse_detection,
    parse_grounding,
    parse_spatial,
    read_field,
    spatial_answer,
    text_answer,
)
from vrft.verifiers import RewardSpec

ToFrame = Callable[[dict, tuple[int, int], tuple[int, int], str], dict]


@dataclass(frozen=True)
class Task:
    """What vrft knows of one paper task. `name` is what routes, records and metrics
    (`reward/<task>/...`, `alarms/<task>/...`) use; every function is pure."""

    name: str
    source: str  # where the task and its data format are defined (arXiv id and section, docs/sources.md)
    rewards: tuple[dict[str, Any], ...]  # the default composition, as RewardSpec fields
    fields: tuple[str, ...]  # the released columns holding the answer, the first non-empty one read
    parse: Callable[[str, str], dict]  # (that text, its column) -> the typed ground truth the rewards read
    check: Callable[[dict, str], dict]  # an explicit `ground_truth` column, checked (task name for messages)
    answer: Callable[[dict, str], str]  # what a perfect completion puts inside <answer>
    template: str  # the paper's prompt template (orchestrator/core/templates.py)
    aliases: tuple[str, ...] = ()  # other names datasets and scripts give the task
    truth_boxes: Callable[[dict], list[Box] | None] | None = None  # a row's boxes; None: no boxes
    answer_boxes: Callable[[str, str], list[Box]] | None = None  # (completion, frame) -> the boxes it names
    to_frame: ToFrame | None = None  # (truth, image size, resized size, frame) -> truth in the answer frame
    k_shot_class: Callable[[dict, dict], str | None] | None = None  # (row, truth) -> class; None: no k-shot
    alarms: tuple[str, ...] = ()  # answer alarms only this task raises (observe/alarms.py)

    @property
    def has_boxes(self) -> bool:
        return self.truth_boxes is not None

    def default_rewards(self) -> list[RewardSpec]:
        return [RewardSpec(**spec) for spec in self.rewards]

    @property
    def accuracy(self) -> str | None:
        return accuracy_component(self.default_rewards())


_TASKS: dict[str, Task] = {}
_ALIASES: dict[str, str] = {}


def register_task(task: Task) -> Task:
    """Add a task; a name or alias taken by another task is an error."""
    for name in (task.name, *task.aliases):
        owner = _ALIASES.get(name, name if name in _TASKS else None)
        if owner is not None and owner != task.name:
            raise ValueError(f"task name {name!r} is taken by {owner!r}")
    _TASKS[task.name] = task
    _ALIASES.update(dict.fromkeys(task.aliases, task.name))
    return task


def task_names() -> list[str]:
    """The paper tasks' names, in registration order."""
    return list(_TASKS)


def known_names() -> list[str]:
    """Every name a row or config may give a paper task: the names, then the aliases."""
    return [*_TASKS, *_ALIASES]


def k_shot_tasks() -> list[str]:
    """The tasks a k-shot subset can be drawn from (their rows have a class), sorted."""
    return sorted(name for name, task in _TASKS.items() if task.k_shot_class is not None)


def paper_name(name: str) -> str:
    """The paper task an alias stands for (`color` → `classification`); any other name as it is."""
    return _ALIASES.get(name, name)


def find_task(name: str | None) -> Task | None:
    """The record of a paper task by name or alias; None for no task or the user's own."""
    return None if name is None else _TASKS.get(paper_name(name))


def get_task(name: str) -> Task:
    """The record of a paper task by name or alias; an unknown name is a one-line error."""
    task = find_task(name)
    if task is None:
        raise ValueError(f"unknown task {name!r} (known: {', '.join(known_names())})")
    return task


def canonical_task(name: str) -> str:
    """The paper task a dataset's task name stands for; an unknown name is a one-line error."""
    return get_task(name).name


# ---- the papers' tasks -------------------------------------------------------------------------------


def _boxes_to_frame(truth: dict, size: tuple[int, int], resized: tuple[int, int], frame: str) -> dict:
    return {**truth, "boxes": boxes_to_frame(truth["boxes"], size, resized, frame)}


def _box_to_frame(truth: dict, size: tuple[int, int], resized: tuple[int, int], frame: str) -> dict:
    return {**truth, "box": box_to_frame(truth["box"], size, resized, frame)}


_FORMAT = {"name": "format"}
_BY_SOLUTION, _BY_ANSWER = ("solution", "answer"), ("answer", "solution")

# The papers' compositions (docs/sources.md V3: R = R_IoU + R_conf + R_format for detection; R4:
# accuracy + format with equal weights for Reason-RFT).
register_task(Task(
    "detection", "arXiv 2503.01785 §3.2 (IoU and confidence rewards); docs/sources.md V3-V5",
    ({"name": "detection_iou"}, {"name": "detection_confidence"}, _FORMAT), _BY_SOLUTION,
    parse_detection, check_detection, detection_answer, "visual_rft/detection",
    truth_boxes=detection_truth_boxes, answer_boxes=detection_answer_boxes, to_frame=_boxes_to_frame,
    k_shot_class=detection_class))
register_task(Task(
    "classification", "arXiv 2503.01785 §3.2 (classification reward); docs/sources.md V3-V5",
    ({"name": "classification"}, _FORMAT), _BY_SOLUTION, parse_answer, check_answer, text_answer,
    "visual_rft/classification", aliases=("color",),  # the synthetic colour task is a classification
    k_shot_class=answer_class, alarms=("multi_class",)))
register_task(Task(
    "grounding", "arXiv 2503.01785 §4.3 (reasoning grounding, LISA); docs/sources.md V3-V5",
    ({"name": "grounding_giou"}, _FORMAT), _BY_SOLUTION, parse_grounding, check_grounding, grounding_answer,
    "visual_rft/lisa", aliases=("lisa",),
    truth_boxes=grounding_truth_boxes, answer_boxes=grounding_answer_boxes, to_frame=_box_to_frame))
# Reason-RFT's scripts name their tasks clevr-math, geomath and trance-only-full.
register_task(Task(
    "counting", "arXiv 2503.20752 §4 (visual counting); docs/sources.md R4-R6",
    ({"name": "counting"}, _FORMAT), _BY_ANSWER, parse_answer, check_answer, text_answer,
    "reason_rft/counting", aliases=("clevr-math",)))
register_task(Task(
    "structure", "arXiv 2503.20752 §4 (structure perception); docs/sources.md R4-R6",
    ({"name": "math"}, _FORMAT), _BY_ANSWER, parse_answer, check_answer, text_answer,
    "reason_rft/structure", aliases=("math", "geomath")))
register_task(Task(
    "spatial", "arXiv 2503.20752 §4 (spatial transformation, TRANCE); docs/sources.md R4-R6",
    ({"name": "spatial_transform", "options": {"mode": "exact"}}, _FORMAT), _BY_ANSWER, parse_spatial,
    check_spatial, spatial_answer, "reason_rft/spatial", aliases=("spatial_transform", "trance", "trance-only-full")))


# ---- a row's ground truth and a perfect answer, by the row's task ------------------------------------


def parse_ground_truth(row: dict, task: str) -> dict:
    """The typed ground truth of `row` for `task` (ground_truth.py's module docstring has each form).

    An explicit `ground_truth` column wins (checked for a paper task). Raises `GroundTruthError` naming
    the field and the reason when it does not parse; a task that is not a paper task needs an explicit
    `ground_truth` column (its own rewards read it as is).
    """
    record = find_task(task)
    explicit = explicit_truth(row.get("ground_truth"))
    if record is None:
        if explicit is None:
            raise GroundTruthError(
                f"task {task!r} is not one of {', '.join(task_names())}; give its rows a 'ground_truth' column"
            )
        return explicit
    if explicit is not None:
        return record.check(explicit, record.name)
    column, text = read_field(row, record.fields, record.name)
    return record.parse(text, column)


def answer_text(task: str, ground_truth: dict) -> str:
    """What a perfect completion puts inside `<answer>`: the released answer format of `task`."""
    record = find_task(task)
    if record is None:
        raise GroundTruthError(f"no answer format for task {task!r} (known: {', '.join(task_names())})")
    return record.answer(ground_truth, record.name)


def perfect_answer(task: str, ground_truth: dict) -> str:
    """A completion `<think>...</think><answer>...</answer>` that gets each of `task`'s rewards'
    maximum: the ground truth written in the task's released answer format (boxes with Confidence
    1 in the single-quoted detection format, 'No Objects' for negatives, `(x1,y1),(x2,y2)` for
    grounding, the answer string otherwise)."""
    return f"<think>{PERFECT_THOUGHT}</think><answer>{answer_text(task, ground_truth)}</answer>"


def gt_boxes(task: str | None, ground_truth: dict) -> list[Box] | None:
    """The row's ground-truth boxes (None: not a box task)."""
    record = find_task(task)
    return None if record is None or record.truth_boxes is None else record.truth_boxes(ground_truth)


def predicted_boxes(task: str | None, completion: str, frame: str = "rel1000") -> list[Box] | None:
    """The boxes a completion names, parsed as its rewards parse them: [] when the answer names none
    or does not parse; None when the task has no boxes."""
    record = find_task(task)
    return None if record is None or record.answer_boxes is None else record.answer_boxes(completion, frame)


# ---- rewards per task --------------------------------------------------------------------------------


def default_rewards(task: str) -> list[RewardSpec]:
    return get_task(task).default_rewards()


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
            named = {paper_name(k): v for k, v in rewards.items()}
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
