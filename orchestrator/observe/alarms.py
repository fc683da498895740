"""Reward-hacking alarms: per-task shares, computed every step from the prompt-group records, that
rise when a policy finds a hole in a reward rather than learning the task.

Each alarm is a pure function of the step's `PromptGroup`s (`alarm_metrics`), logged as
`alarms/<task>/<name>` (`alarms/<name>` for rows without a task):

    empty_answer         share of completions whose answer is empty (Visual-RFT issue #176: an empty
                         answer scores 1 under the paper's substring match)
    multi_class          classification: share of answers that name a list ("A or B or C", "A, B"),
                         a separator the ground truth does not contain (Visual-RFT issue #79)
    format_only          share of completions paid by the format term alone (every other component 0)
    tags_in_answer       share of answers that hold a <think>/<answer> tag themselves: text spliced
                         around the real answer that the format check still passes (seen in the CPU
                         demo: "<answer>'Confidence</think><answer>blue</answer>" scores 2)
    pred_boxes, gt_boxes detection/grounding: mean predicted and ground-truth boxes per completion,
    box_count_ratio      and their ratio (sprayed boxes buy IoU matches and confidence terms)
    full_image_boxes     share of predicted boxes covering ≥ 90% of the image (one box over
                         everything overlaps every object)
    truncated            share of completions cut at max_new_tokens
    answer_chars         mean length of the answer in characters, and
    answer_length_drift  its ratio to the median of the run's first `BASELINE_STEPS` steps
    tool_spam            multi-turn rollouts with tools: share of trajectories the turn budget cut while
                         they still called tools (calling is cheaper than answering)
    invalid_calls        share of tool calls that failed (malformed, unknown tool, bad arguments)
    never_looking        share of trajectories that called no tool (the tools are ignored)

`AlarmWatch` holds what needs memory (the length baseline, which alarms have warned) and logs one
warning line per alarm and task, the first time its `logging.alarms` threshold is crossed.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from collections import defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from vrft.orchestrator.config.thresholds import SHARES, AlarmThresholds, crossed
from vrft.orchestrator.core.boxes import area_share
from vrft.orchestrator.core.tasks import find_task, gt_boxes, predicted_boxes
from vrft.verifiers.answers import answer_or_whole

if TYPE_CHECKING:
    from vrft.orchestrator.core.records import PromptGroup

log = logging.getLogger("vrft")

BASELINE_STEPS = 5
FULL_IMAGE_SHARE = 0.9
# Separators that make an answer a list of classes, as the strict classification reward reads them.
_TAG = re.compile(r"</?(?:think|answer)>")
_LIST_SEPARATOR = re.compile(r",|;|\||\n|&|/|\bor\b|\band\b|\bvs\.?(?!\w)", re.IGNORECASE)
def answer_of(completion: str) -> str:
    """What the rewards read as the answer: the `<answer>` content, else the whole text."""
    return answer_or_whole(completion, dotall=True)[0]


def tagged_answers(scored: list) -> list[str]:
    """The `<answer>` contents of the completions that have one (first `<answer>` to first `</answer>`,
    as the rewards read it)."""
    out = []
    for _, c in scored:
        text = c.completion.text
        i = text.find("<answer>")
        j = text.find("</answer>", i + 8) if i >= 0 else -1
        if j >= 0:
            out.append(text[i + 8 : j])
    return out


def names_several(answer: str, truth: str) -> bool:
    """Whether `answer` is a list: it has a separator that the ground-truth name itself lacks
    ("salt and pepper" may keep its "and"). Tags spliced into the answer are tags_in_answer's to count,
    not a list ("</think>" holds a "/")."""
    answer = _TAG.sub(" ", answer)
    allowed = {m.group(0).lower() for m in _LIST_SEPARATOR.finditer(truth)}
    return any(m.group(0).lower() not in allowed for m in _LIST_SEPARATOR.finditer(answer))


def format_only(scores: dict[str, float]) -> bool | None:
    """Paid by the format term alone (None: the task has no format term beside others)."""
    others = [v for k, v in scores.items() if k not in ("format", "total")]
    if "format" not in scores or not others:
        return None
    return scores["format"] > 0 and all(v == 0 for v in others)


def _share(flags: list[bool | None]) -> float | None:
    counted = [f for f in flags if f is not None]
    return sum(counted) / len(counted) if counted else None


def task_alarms(groups: list[PromptGroup], extent: Callable, frame: str) -> dict[str, float]:
    """The alarms of groups that share one task. `extent(item)`: the answer frame's (width, height)
    for a row's image (see boxes.frame_extent)."""
    task = groups[0].item.task
    record = find_task(task)  # None: rows without a task, or the user's own
    scored = [(g.item, c) for g in groups for c in g.completions]
    answers = [answer_of(c.completion.text) for _, c in scored]
    out: dict[str, float | None] = {
        "empty_answer": _share([a == "" for a in answers]),
        "format_only": _share([format_only(c.scores) for _, c in scored]),
        "tags_in_answer": _share([_TAG.search(a) is not None for a in tagged_answers(scored)]) or 0.0,
        "truncated": _share([c.completion.finish_reason == "length" for _, c in scored]),
        "answer_chars": sum(len(a) for a in answers) / len(answers),
    }
    if record is not None and "multi_class" in record.alarms:
        out["multi_class"] = _share([names_several(a, str(item.ground_truth.get("answer", "")))
                                     for (item, _), a in zip(scored, answers, strict=True)])
    if record is not None and record.has_boxes:
        n_pred, n_gt, shares = 0, 0, []
        for item, c in scored:
            preds = predicted_boxes(task, c.completion.text, frame) or []
            n_pred += len(preds)
            n_gt += len(gt_boxes(task, item.ground_truth) or [])
            size = extent(item)
            shares += [area_share(b, size) >= FULL_IMAGE_SHARE for b in preds]
        out["pred_boxes"] = n_pred / len(scored)
        out["gt_boxes"] = n_gt / len(scored)
        out["box_count_ratio"] = n_pred / n_gt if n_gt else None
        out["full_image_boxes"] = _share(shares) or 0.0
    out.update(tool_alarms([c.completion.trajectory for _, c in scored]))
    return {k: float(v) for k, v in out.items() if v is not None}


def tool_alarms(trajectories: list) -> dict[str, float | None]:
    """tool_spam, invalid_calls and never_looking of multi-turn completions (none for one-turn ones)."""
    trajectories = [t for t in trajectories if t is not None]
    if not trajectories:
        return {}
    calls = sum(t.tool_calls for t in trajectories)
    return {"tool_spam": _share([t.cut_by_turns for t in trajectories]),
            "invalid_calls": sum(t.tool_errors for t in trajectories) / calls if calls else None,
            "never_looking": _share([t.tool_calls == 0 for t in trajectories])}


def alarm_metrics(groups: list[PromptGroup], extent: Callable, frame: str = "rel1000") -> dict[str, float]:
    """`alarms/<task>/<name>` for every task among `groups` (`alarms/<name>` for rows without one);
    no drift (that needs the run's history: `AlarmWatch`)."""
    by_task: dict[str | None, list[PromptGroup]] = defaultdict(list)
    for g in groups:
        if g.completions:
            by_task[g.item.task].append(g)
    out = {}
    for task, task_groups in by_task.items():
        prefix = f"alarms/{task}/" if task is not None else "alarms/"
        out.update({prefix + k: v for k, v in task_alarms(task_groups, extent, frame).items()})
    return out


def wilson_lower(share: float, n: int, z: float = 1.96) -> float:
    """The lower end of the Wilson score interval of a share seen in n samples (95% with z = 1.96):
    how low the true share may plausibly be. A share of 7 in 128 (0.055) has 0.027."""
    if n <= 0:
        return 0.0
    centre = share + z * z / (2 * n)
    spread = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def completions_by_prefix(groups: list[PromptGroup]) -> dict[str, int]:
    """How many completions each task's alarms (keyed by their `alarms/<task>/` prefix) rest on."""
    out: dict[str, int] = defaultdict(int)
    for g in groups:
        out[f"alarms/{g.item.task}/" if g.item.task is not None else "alarms/"] += len(g.completions)
    return out


class AlarmWatch:
    """The alarms of a run: adds each task's answer-length drift to `alarm_metrics` and warns once
    per alarm and task when a threshold is crossed, but only after `warmup_steps` and on a value
    pooled over the task's latest steps until it rests on `min_samples` completions; a share, when
    its 95% lower bound (Wilson) crosses (a step's share of a few dozen completions is noise: the
    demo's early steps "crossed" tags_in_answer with 4 of 64)."""

    def __init__(self, thresholds: AlarmThresholds, extent: Callable, frame: str = "rel1000"):
        self.thresholds, self.extent, self.frame = thresholds, extent, frame
        self.lengths: dict[str, list[float]] = defaultdict(list)  # answer_chars of the first steps
        self.recent: dict[str, deque[tuple[float, int]]] = defaultdict(deque)  # key -> (value, completions)
        self.warned: set[str] = set()

    def restore(self, history: list[dict]) -> None:
        """After a resume: the length baseline and the alarms already raised, from the metrics the run
        logged (steps in order)."""
        for record in history:
            for key, value in record.items():
                if not key.startswith("alarms/"):
                    continue
                seen = self.lengths[key[: -len("answer_chars")]] if key.endswith("answer_chars") else None
                if seen is not None and len(seen) < BASELINE_STEPS:
                    seen.append(float(value))
                name = key.rsplit("/", 1)[-1]
                if crossed(name, float(value), getattr(self.thresholds, name, None)):
                    self.warned.add(key)  # warned before the resume: not again

    def pooled(self, key: str, value: float, n: int) -> float | None:
        """The completion-weighted mean of `key` over its latest steps that together hold at least
        `min_samples` completions; None while the run has not yet seen that many."""
        recent = self.recent[key]
        recent.appendleft((value, n))
        total, weighted, kept = 0, 0.0, 0
        for v, count in recent:
            total, weighted, kept = total + count, weighted + v * count, kept + 1
            if total >= self.thresholds.min_samples:
                break
        while len(recent) > kept:
            recent.pop()
        return weighted / total if total >= self.thresholds.min_samples else None

    def __call__(self, step: int, groups: list[PromptGroup]) -> dict[str, float]:
        metrics = alarm_metrics(groups, self.extent, self.frame)
        for key in [k for k in metrics if k.endswith("answer_chars")]:
            prefix = key[: -len("answer_chars")]
            seen = self.lengths[prefix]
            if len(seen) < BASELINE_STEPS:
                seen.append(metrics[key])
            # The median: one early spike (a burst of rambling answers) must not become the baseline.
            baseline = statistics.median(seen)
            metrics[prefix + "answer_length_drift"] = metrics[key] / max(baseline, 1.0)
        counts = completions_by_prefix(groups)
        for key, value in metrics.items():
            name = key.rsplit("/", 1)[-1]
            limit = getattr(self.thresholds, name, None)
            if limit is None or key in self.warned:
                continue
            pooled = self.pooled(key, value, counts.get(key[: -len(name)], 0))
            if step <= self.thresholds.warmup_steps or pooled is None:
                continue
            n = sum(count for _, count in self.recent[key])
            # A share warns when even its lower bound is past the threshold: a policy whose base rate
            # sits at the threshold (the demo's tags_in_answer, 0.04 +- 0.03 a step) is not a hack.
            evidence = wilson_lower(pooled, n) if name in SHARES else pooled
            if not crossed(name, evidence, limit):
                continue
            self.warned.add(key)
            bound = f" (95% lower bound {evidence:.3g})" if name in SHARES else ""
            log.warning("alarm: %s = %.3g%s over the latest %d completions at step %d crosses "
                        "logging.alarms.%s = %g (is a reward paying for something other than the task? "
                        "see the rollout records, docs/observability.md)",
                        key, pooled, bound, n, step, name, limit)
        return metrics
