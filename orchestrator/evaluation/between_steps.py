"""Evaluation between GRPO steps, on the run's own rollout engines, and keeping the best checkpoint.

    eval_sets = load_eval_sets(cfg)                 before Ray starts: bad eval inputs fail first
    metrics = evaluate(cfg, workers, processor, eval_sets)   {"eval/<benchmark>/<metric>": value, ...}
    best = BestCheckpoint(cfg, state)               run.keep_best: which checkpoint to keep as best

The engines hold the current policy (the weights were just broadcast), so no second copy of the model
is loaded. Prompts are built with the run's processor (its min/max pixels), not the benchmark's own
resolution (`vrft eval` uses that); docs/evaluation.md says so.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from vrft.orchestrator.config.schema import TrainConfig
from vrft.orchestrator.evaluation.driver import EvalSet, generate, load_eval_set, score
from vrft.rollout.tools import get_tools


def load_eval_sets(cfg: TrainConfig) -> list[EvalSet]:
    sets = []
    for spec in cfg.eval.benchmarks:
        try:
            sets.append(load_eval_set(spec))
        except (ValueError, OSError, KeyError) as err:
            raise ValueError(f"eval.benchmarks[{spec.benchmark}]: {str(err).splitlines()[0]}") from None
    return sets


def eval_due(cfg: TrainConfig, step: int) -> bool:
    """At step 0 when `eval.at_start`; every `eval.every` steps; and at the last step."""
    if not cfg.eval.benchmarks:
        return False
    if step == 0:
        return cfg.eval.at_start
    return bool(cfg.eval.every) and (step % cfg.eval.every == 0 or step == cfg.run.steps)


def evaluate(cfg: TrainConfig, workers: list, processor, eval_sets: list[EvalSet], step: int) -> dict[str, float]:
    out: dict[str, float] = {}
    # The run's engines sample with its tools, if any: the eval prompts advertise them as training's do.
    tools = cfg.rollout.tools
    schemas = [t.schema() for t in get_tools(tools.names).values()] if tools else None
    for eval_set in eval_sets:
        completions, timing = generate(workers, processor, eval_set, batch_size=cfg.eval.batch_size,
                                       progress=False, seed=cfg.run.seed + step,
                                       max_new_tokens=cfg.eval.max_new_tokens, tools=schemas)
        timing.pop("trajectories", None)
        _, report = score(eval_set, completions)
        name = eval_set.benchmark.name
        out.update({f"eval/{name}/{m}": float(v) for m, v in report["metrics"].items()})
        out[f"eval/{name}/seconds"] = timing["seconds"]
    return out


class BestCheckpoint:
    """`run.keep_best`: the best value of one eval metric so far, and at which step; it survives a
    resume through the run state."""

    def __init__(self, cfg: TrainConfig, state: dict | None):
        self.metric, self.mode = cfg.run.keep_best, cfg.run.keep_best_mode
        saved = (state or {}).get("best") or {}
        self.value: float | None = saved.get("value")
        self.step: int | None = saved.get("step")

    def improves(self, metrics: dict[str, float]) -> bool:
        if self.metric is None or self.metric not in metrics or math.isnan(metrics[self.metric]):
            return False
        value = metrics[self.metric]
        if self.value is None or (value > self.value if self.mode == "max" else value < self.value):
            return True
        return False

    def record(self, metrics: dict[str, float], step: int) -> None:
        self.value, self.step = metrics[self.metric], step

    def state(self) -> dict | None:
        return None if self.value is None else {"metric": self.metric, "value": self.value, "step": self.step}


def mark_best(checkpoint: Path) -> None:
    """`checkpoints/best` names the best checkpoint (written whole, then renamed)."""
    pointer = checkpoint.parent / "best.tmp"
    pointer.write_text(checkpoint.name)
    os.replace(pointer, checkpoint.parent / "best")
