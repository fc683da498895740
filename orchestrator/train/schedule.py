"""When each step's rollouts are launched, and how stale a trained batch may be: the loop's
scheduling, pure (no Ray, no clock), so the simulation in benchmarks/bench_async_sim.py and
tests/test_async_sim.py drive exactly the logic `train()` runs.

Sync mode launches step s's rollouts just before step s needs them (nothing in flight while the
learner trains). Async mode launches up to `max_staleness` steps ahead, right after step s's
rollouts are collected and before its learning, so engines generate while the learner trains.
"""

from __future__ import annotations


class LaunchSchedule:
    """Which steps' rollouts are due for launch. `due(last)` hands out, once each and in order,
    every step up to `last` (and up to the run's last step) not launched yet."""

    def __init__(self, mode: str, max_staleness: int, start_step: int, steps: int):
        self.ahead = max_staleness if mode == "async" else 0
        self.next_launch = start_step + 1
        self.steps = steps

    def due(self, last_step: int) -> list[int]:
        last = min(last_step, self.steps)
        launched = list(range(self.next_launch, last + 1))
        self.next_launch = max(self.next_launch, last + 1)
        return launched


def check_staleness(learner_version: int, oldest_version: int, max_staleness: int) -> int:
    """Policy versions between the learner and the oldest completion of the batch it is about to
    train on; beyond `max_staleness` the importance correction is not trusted, so it is an error
    (it would mean the schedule above is broken, not a tunable)."""
    staleness = learner_version - oldest_version
    if staleness > max_staleness:
        raise RuntimeError(f"async: completions from policy version {oldest_version} reached the learner at "
                           f"version {learner_version}, beyond run.max_staleness={max_staleness}")
    return staleness
