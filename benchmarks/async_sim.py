"""A simulated run of the training loop on a simulated clock: rollout engines and the learner are
separate resources with fixed per-token costs, so what async mode buys is the scheduling alone.

The driver below makes the loop's calls in the loop's order (orchestrator/train/loop.py `train` and
orchestrator/train/step.py `grpo_step`), through the loop's own `LaunchSchedule` and `check_staleness`:

    for step: launch what is due up to `step` → collect step's rollouts (wait) → launch what is due
    up to `step + ahead` (async) → staleness check → learn (wait) → weight sync (wait)

and the fake engines keep the one property of Ray actors that matters here: each serves its calls
in order, so a weight sync queued behind rollouts launched ahead waits for them, and those rollouts
run on the weights the engine held when they started (their policy version).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from vrft.orchestrator.train.schedule import LaunchSchedule, check_staleness


@dataclass(frozen=True)
class Costs:
    """Simulated seconds. Generation is split evenly over the engines (one call each per step)."""
    tokens_per_step: int = 4096
    gen_s_per_token: float = 1e-3  # all of a step's tokens on one engine
    learn_s_per_token: float = 1e-3
    sync_s: float = 0.0  # an engine's receive call, once it is reached in its queue
    engines: int = 1

    @property
    def generate_s(self) -> float:
        return self.tokens_per_step * self.gen_s_per_token / self.engines

    @property
    def learn_s(self) -> float:
        return self.tokens_per_step * self.learn_s_per_token


@dataclass
class Engine:
    """One rollout actor: calls run one at a time, in the order they were made."""
    free_at: float = 0.0
    version: int = 0

    def generate(self, now: float, seconds: float) -> tuple[float, int]:
        start = max(now, self.free_at)
        self.free_at = start + seconds
        return self.free_at, self.version  # sampled with the weights it holds when it starts

    def receive(self, now: float, version: int, seconds: float) -> float:
        self.free_at = max(now, self.free_at) + seconds
        self.version = version
        return self.free_at


@dataclass
class SimRun:
    makespan: float = 0.0
    step_end: list[float] = field(default_factory=list)
    staleness: list[int] = field(default_factory=list)
    # (clock, event, step): "launch", "collect", "learn", "sync" in the order the driver made them
    events: list[tuple[float, str, int]] = field(default_factory=list)
    learner_busy: float = 0.0

    def step_seconds(self, skip: int = 0) -> float:
        """Mean step time after the first `skip` steps (the pipeline's fill)."""
        ends = [0.0, *self.step_end]
        return (ends[-1] - ends[skip]) / (len(ends) - 1 - skip)


def simulate(mode: str, max_staleness: int, steps: int, costs: Costs) -> SimRun:
    engines = [Engine() for _ in range(costs.engines)]
    schedule = LaunchSchedule(mode, max_staleness, 0, steps)
    queue: deque[tuple[int, float, int]] = deque()  # (step, all calls done at, oldest version)
    run = SimRun()
    now = 0.0
    learner_version = 0

    def launch_upto(last_step: int) -> None:
        for launch_step in schedule.due(last_step):
            calls = [e.generate(now, costs.generate_s) for e in engines]
            queue.append((launch_step, max(d for d, _ in calls), min(v for _, v in calls)))
            run.events.append((now, "launch", launch_step))

    for step in range(1, steps + 1):
        launch_upto(step)
        launched, done_at, oldest = queue.popleft()
        assert launched == step, f"step {step} would train on step {launched}'s rollouts"
        now = max(now, done_at)
        run.events.append((now, "collect", step))
        if schedule.ahead:
            launch_upto(step + schedule.ahead)
        run.staleness.append(check_staleness(learner_version, oldest, max_staleness))
        run.events.append((now, "learn", step))
        now += costs.learn_s
        run.learner_busy += costs.learn_s
        # sync_weights: every engine's receive call is queued behind its rollouts in flight.
        now = max(e.receive(now, learner_version + 1, costs.sync_s) for e in engines)
        learner_version += 1
        run.events.append((now, "sync", step))
        run.step_end.append(now)
    run.makespan = now
    return run


def speedup(costs: Costs, steps: int = 50, max_staleness: int = 1) -> tuple[float, SimRun, SimRun]:
    """Sync makespan over async makespan, and both runs."""
    sync = simulate("sync", max_staleness, steps, costs)
    async_ = simulate("async", max_staleness, steps, costs)
    return sync.makespan / async_.makespan, sync, async_


def limit(costs: Costs) -> float:
    """The most overlap can give: (generate + learn) / max(generate, learn), syncs aside."""
    g, learn = costs.generate_s, costs.learn_s
    return (g + learn) / max(g, learn)
