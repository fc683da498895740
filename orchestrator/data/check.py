"""`vrft check-data`: read the data exactly as `vrft train` does, write each row's ground truth as a
perfect answer in its task's answer format, score it with the run's rewards, and report per task.

A perfect answer that does not reach the rewards' maximum means the data and the rewards disagree
(a wrong field, a wrong frame, an unparseable string): the run would train on a silent 0. `vrft
train` runs the same check on its first `data.check_rows` rows before Ray starts.

In a run with image tools (`rollout.tools`) the perfect answer comes after one tool call that ran
(`perfect_trajectory_facts`, the facts the run hands the rewards), so a reward that reads the trajectory
(`tool_bonus`) is checked at its maximum too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from vrft.orchestrator.config.schema import TrainConfig
from vrft.orchestrator.core.ground_truth import GroundTruthError
from vrft.orchestrator.core.tasks import data_tasks, find_task, perfect_answer, reward_routes
from vrft.orchestrator.data.prompts import RowError, RowReader, resolve_frame
from vrft.orchestrator.data.sources import load_rows
from vrft.rollout.turns import Trajectory, TurnRecord
from vrft.verifiers import CompositeReward, RewardSpec, reward_info
from vrft.verifiers.rewards_tools import TRAJECTORY_KEY


def perfect_trajectory_facts() -> dict[str, int | bool]:
    """What a rollout hands the rewards for a tool call that ran, then the answer: taken from
    `Trajectory.facts` itself, so the check cannot drift from what a run scores."""
    turns = [TurnRecord(text="", call="{}", tool="zoom", observation=""), TurnRecord(text="")]
    return Trajectory(token_mask=[], mm_token_type_ids=[], pixel_values=None, image_grid_thw=None, views=[],
                      turns=turns).facts()


@dataclass
class TaskReport:
    rows: int = 0
    parsed: int = 0
    skipped: int = 0  # undecodable images, special tokens spelled out in text: skipped and counted in training too
    perfect: int = 0
    checked: int = 0  # rows whose perfect answer could be scored (paper tasks, known maxima)
    failures: list[str] = field(default_factory=list)  # "row ID: reason", the first few
    skips: list[str] = field(default_factory=list)  # "row ID: reason (skipped)" for text skips, the first few

    @property
    def failed(self) -> int:
        return (self.rows - self.parsed - self.skipped) + (self.checked - self.perfect)


def max_total(specs: list[RewardSpec]) -> float | None:
    """The weighted total a perfect answer reaches; None if a user reward's range is unknown."""
    total = 0.0
    for s in specs:
        if ":" in s.name:
            return None
        info = reward_info(s.name)
        total += s.weight * (info.high if s.weight >= 0 else info.low)
    return total


def check_rows(cfg: TrainConfig, processor=None, limit: int | None = None, keep: int = 5,
               ) -> dict[str, TaskReport]:
    """Per task (the row's task key, "-" for rows without one): how many rows parse and how many
    perfect answers get the rewards' maximum. `processor` is needed only for the resized-pixels
    frame (the image's size after the processor's resize)."""
    try:
        dataset = load_rows(cfg.data.path, split=cfg.data.split, config_name=cfg.data.config_name,
                            image_root=cfg.data.image_root)
    except (ValueError, OSError) as err:
        raise ValueError(f"data.path: {str(err).splitlines()[0]}") from None
    frame = resolve_frame(cfg)
    reader = RowReader(cfg, processor, frame)
    try:
        tasks = data_tasks(dataset, cfg.data.task, cfg.custom_tasks())
    except ValueError as err:
        raise ValueError(f"data.task or column 'task': {err}") from None
    routes = reward_routes(cfg.rewards, tasks, frame)
    scorers = {route: (CompositeReward(specs), max_total(specs)) for route, specs in routes.items()}
    reports: dict[str, TaskReport] = defaultdict(TaskReport)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(n):
        row = dataset[index]
        try:
            view = reader.read(row, index)
        except RowError as err:
            task = str(row.get("task") or cfg.data.task or "-")
            report = reports[task]
            report.rows += 1
            if len(report.failures) < keep:
                report.failures.append(str(err))
            continue
        report = reports[view.task or "-"]
        report.rows += 1
        if view.images is None or view.skip is not None:
            report.skipped += 1
            if view.skip is not None and len(report.skips) < keep:
                report.skips.append(f"row {view.row_id}: {view.skip} (skipped)")
            continue
        report.parsed += 1
        composite, best = scorers[view.task or ""]
        if find_task(view.task) is None or best is None:
            continue  # the user's own task or reward: no answer format or maximum to check against
        report.checked += 1
        truth = view.ground_truth if cfg.rollout.tools is None else \
            {**view.ground_truth, TRAJECTORY_KEY: perfect_trajectory_facts()}
        try:
            scores, errors = composite.score(perfect_answer(view.task, view.ground_truth), truth)
        except GroundTruthError as err:
            scores, errors = {"total": 0.0}, [str(err)]
        if abs(scores["total"] - best) <= 1e-6 and not errors:
            report.perfect += 1
        elif len(report.failures) < keep:
            low = {k: round(v, 4) for k, v in scores.items() if k != "total"}
            why = "; ".join(errors) or f"perfect answer scores {scores['total']:.4f} of {best:.4f} {low}"
            report.failures.append(f"row {view.row_id}: {why}")
    return dict(reports)


def format_table(reports: dict[str, TaskReport]) -> str:
    lines = [f"{'task':<16}{'rows':>7}{'parsed':>8}{'skipped':>9}{'perfect':>9}{'rate':>9}"]
    for task, r in sorted(reports.items()):
        rate = f"{100 * r.perfect / r.checked:.1f}%" if r.checked else "n/a"
        lines.append(f"{task:<16}{r.rows:>7}{r.parsed:>8}{r.skipped:>9}{r.perfect:>9}{rate:>9}")
    for task, r in sorted(reports.items()):
        for failure in r.failures + r.skips:
            lines.append(f"  {task}: {failure}")
    return "\n".join(lines)


def first_failure(reports: dict[str, TaskReport]) -> str | None:
    """One line for `vrft train`'s preflight: the first failing row of the first failing task."""
    for task, r in sorted(reports.items()):
        if r.failed:
            detail = r.failures[0] if r.failures else "see vrft check-data"
            return f"data: {r.failed} of {r.rows} {task} rows fail the check; {detail}"
    return None
