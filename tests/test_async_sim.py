"""The loop's async scheduling (orchestrator/train/schedule.py) driven on a simulated clock
(benchmarks/async_sim.py): what it launches when, the staleness bound, and the overlap it buys when
engines and learner are separate resources. Every assertion is on the simulated clock, none on wall time."""

from __future__ import annotations

import pytest

import benchmarks.async_sim as sim
from vrft.orchestrator.train.schedule import LaunchSchedule, check_staleness

EQUAL = sim.Costs(tokens_per_step=1000, gen_s_per_token=1e-3, learn_s_per_token=1e-3, sync_s=0.01)


def test_schedule_hands_out_each_step_once_in_order_and_never_past_the_run():
    s = LaunchSchedule("async", 2, start_step=0, steps=5)
    assert s.due(1) == [1]
    assert s.due(1 + s.ahead) == [2, 3]
    assert s.due(2) == []  # already launched ahead
    assert s.due(99) == [4, 5]
    assert s.due(99) == []


def test_schedule_resumes_after_the_checkpointed_step_and_sync_launches_nothing_ahead():
    assert LaunchSchedule("async", 1, start_step=7, steps=10).due(8) == [8]
    sync = LaunchSchedule("sync", 3, start_step=0, steps=10)
    assert sync.ahead == 0
    assert LaunchSchedule("async", 0, start_step=0, steps=10).ahead == 0


def test_check_staleness_passes_up_to_the_bound_and_raises_beyond():
    assert check_staleness(5, 3, 2) == 2
    with pytest.raises(RuntimeError, match="max_staleness=1"):
        check_staleness(5, 3, 1)


def test_sync_mode_launches_each_step_only_after_the_previous_sync():
    run = sim.simulate("sync", 1, 6, EQUAL)
    kinds = [(kind, step) for _, kind, step in run.events]
    expected = [(k, s) for s in range(1, 7) for k in ("launch", "collect", "learn", "sync")]
    assert kinds == expected
    assert run.staleness == [0] * 6
    step = EQUAL.generate_s + EQUAL.learn_s + EQUAL.sync_s
    assert run.makespan == pytest.approx(6 * step)


def test_async_launches_the_next_rollouts_before_learning_at_the_same_instant():
    run = sim.simulate("async", 1, 6, EQUAL)
    for step in range(1, 6):
        launch = next(t for t, k, s in run.events if k == "launch" and s == step + 1)
        learn = next(t for t, k, s in run.events if k == "learn" and s == step)
        order = [(k, s) for _, k, s in run.events]
        assert order.index(("launch", step + 1)) < order.index(("learn", step))
        assert launch == learn
    assert run.staleness == [0, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("bound", [1, 2, 3])
@pytest.mark.parametrize("engines", [1, 2])
@pytest.mark.parametrize("gen", [0.3e-3, 1e-3, 3e-3])
def test_staleness_never_exceeds_the_bound(bound, engines, gen):
    costs = sim.Costs(tokens_per_step=1000, gen_s_per_token=gen, learn_s_per_token=1e-3, sync_s=0.01,
                      engines=engines)
    run = sim.simulate("async", bound, 20, costs)
    assert max(run.staleness) <= bound
    assert len(run.step_end) == 20


def test_a_schedule_running_further_ahead_than_the_bound_is_caught(monkeypatch):
    class TooEager(LaunchSchedule):
        def __init__(self, mode, max_staleness, start_step, steps):
            super().__init__(mode, max_staleness, start_step, steps)
            self.ahead = max_staleness + 1

    monkeypatch.setattr(sim, "LaunchSchedule", TooEager)
    # One engine: rollouts launched 2 ahead run before the sync that precedes them in time.
    with pytest.raises(RuntimeError, match="beyond run.max_staleness=1"):
        sim.simulate("async", 1, 10, EQUAL)


def test_equal_phases_on_separate_resources_give_at_least_1_8x():
    ratio, sync, async_ = sim.speedup(EQUAL, steps=50, max_staleness=1)
    assert ratio >= 1.8
    assert ratio <= sim.limit(EQUAL)
    # Past the first step the step time is max(generate, learn) + sync.
    assert async_.step_seconds(skip=1) == pytest.approx(max(EQUAL.generate_s, EQUAL.learn_s) + EQUAL.sync_s)
    assert sync.learner_busy == async_.learner_busy  # same work, less waiting


@pytest.mark.parametrize("gen", [0.25e-3, 0.5e-3, 2e-3, 4e-3])
def test_unequal_phases_approach_the_limit(gen):
    costs = sim.Costs(tokens_per_step=1000, gen_s_per_token=gen, learn_s_per_token=1e-3, sync_s=0.0)
    ratio, _, _ = sim.speedup(costs, steps=200, max_staleness=1)
    assert ratio == pytest.approx(sim.limit(costs), rel=0.02)
    assert ratio <= sim.limit(costs) + 1e-9
