"""The surface of a run: every metric on wandb's step axis (derived from the keys logged), the
resolved config in wandb's config panel, the SFT and GRPO bars, one console line style, and each
actor's own output in RUN_DIR/logs (shown, its last lines, only when that actor fails)."""

from __future__ import annotations

import logging

import pytest

from vrft.orchestrator.observe.console import ConsoleFormatter
from vrft.orchestrator.observe.tracking import Tracker, new_step_axes


def test_every_namespace_logged_gets_its_records_own_axis():
    record = {"step": 3, "reward/color/accuracy": 1.0, "alarms/color/empty_answer": 0.0,
              "eval/clevr_math/accuracy": 0.5, "dapo/kept_groups": 4.0, "policy_version": 3.0,
              "some_new_family/x/y": 1.0}
    axes = new_step_axes(record, set())
    assert axes == {"reward/*": "step", "alarms/*": "step", "eval/*": "step", "dapo/*": "step",
                    "policy_version": "step", "some_new_family/*": "step"}
    assert new_step_axes({"sft_step": 2, "sft/loss": 0.3}, set()) == {"sft/*": "sft_step"}
    assert new_step_axes(record, set(axes)) == {}  # each namespace once


class Recording:
    """The real (offline) wandb run; its define_metric calls kept."""

    def __init__(self, run):
        self.run, self.defined = run, {}

    def define_metric(self, name, step_metric=None, **kw):
        self.defined[name] = step_metric
        return self.run.define_metric(name, step_metric=step_metric, **kw)

    def __getattr__(self, name):
        return getattr(self.run, name)


def test_wandb_offline_gets_the_config_and_every_metric_on_its_step(tmp_path):
    config = {"run": {"name": "t", "steps": 2}, "learner": {"lr": 1e-4}}
    tracker = Tracker(tmp_path, config, total_steps=2, use_wandb=True, project="vrft-test", progress=False,
                      sft_steps=1)
    assert tracker.wandb is not None, "wandb offline failed to start"
    assert tracker.wandb.config["learner"]["lr"] == 1e-4  # the resolved config, in the config panel
    tracker.wandb = Recording(tracker.wandb)
    tracker.log({"sft_step": 1, "sft/loss": 0.5}, advance=False)
    for step in (1, 2):
        tracker.log({"step": step, "reward/mean": 0.1, "alarms/color/truncated": 0.0, "eval/b/accuracy": 0.2,
                     "dapo/kept": 1.0, "policy_version": float(step)})
    defined = tracker.wandb.defined
    tracker.close()
    assert defined["sft/*"] == "sft_step"
    for name in ("reward/*", "alarms/*", "eval/*", "dapo/*", "policy_version"):
        assert defined[name] == "step", name


def test_grpo_bar_starts_at_the_first_step_and_sft_has_its_own(tmp_path):
    tracker = Tracker(tmp_path, {}, total_steps=50, use_wandb=False, project="p", progress=True, sft_steps=3)
    assert tracker.bar is None and tracker.sft_bar is None  # no clock runs through start-up
    for s in (1, 2, 3):
        tracker.log({"sft_step": s, "sft/loss": 1.0 / s}, advance=False)
    assert tracker.sft_bar.n == 3 and tracker.sft_bar.total == 3 and tracker.bar is None
    tracker.log({"step": 1, "reward/mean": 0.0})
    # Made at step 1 and standing at 1: its rate (and ETA) comes from steps 2.. only.
    assert tracker.bar.n == 1 and tracker.bar.initial == 1
    tracker.log({"step": 2, "reward/mean": 0.0})
    assert tracker.bar.n == 2
    tracker.close()


def test_one_line_style():
    fmt = ConsoleFormatter()
    info = logging.LogRecord("vrft", logging.INFO, __file__, 1, "run dir: %s", ("runs/x",), None)
    warn = logging.LogRecord("datasets", logging.WARNING, __file__, 1, "slow", (), None)
    assert fmt.format(info)[8:] == " run dir: runs/x" and fmt.format(info)[2] == ":"
    assert fmt.format(warn)[8:] == " warning: slow"


@pytest.fixture()
def chatty_actor(ray_cluster):
    import ray

    @ray.remote(num_cpus=0)
    class Chatty:
        def __init__(self):
            import os
            import sys

            print("Loading weights: 100%|##########| 106/106", flush=True)
            for i in range(30):
                sys.stderr.write(f"\rbuilding {i}/30")
            sys.stderr.write("\nDeepSpeed op built successfully\n")
            sys.stderr.flush()
            self.pid = os.getpid()

        def pid_of(self):
            return self.pid

        def fail(self):
            import sys

            print("the last thing it said before failing", file=sys.stderr, flush=True)
            raise ValueError("boom")

    actor = Chatty.remote()
    yield actor, ray.get(actor.pid_of.remote())
    ray.kill(actor)


def test_an_actors_output_lands_in_its_log_file_and_its_failure_shows_the_tail(chatty_actor, tmp_path):
    import ray

    from vrft.orchestrator.runtime.actor_logs import ActorLogs

    actor, pid = chatty_actor
    logs = ActorLogs(tmp_path)
    logs.add("rollout-worker-0", pid)
    with pytest.raises(ray.exceptions.RayTaskError) as failed:
        ray.get(actor.fail.remote())
    tail = logs.failure_tail(failed.value)
    path = tmp_path / "logs" / "rollout-worker-0.log"
    assert tail.startswith("rollout-worker-0: its last ") and str(path) in tail
    shown = tail.splitlines()[1:]
    # The bar's redraws collapse to their last state; the actor's final line comes last.
    assert "  | building 29/30" in shown and shown[-1] == "  | the last thing it said before failing"
    assert not any("building 3/30" in line for line in shown)
    text = path.read_text()
    assert "Loading weights: 100%" in text and "DeepSpeed op built successfully" in text
    assert ":actor_name:" not in text  # Ray's own bookkeeping lines are left out

    logs.save_all()
    assert "the last thing it said" in path.read_text()


def test_an_error_naming_no_known_actor_shows_nothing(tmp_path, ray_cluster):
    from vrft.orchestrator.runtime.actor_logs import ActorLogs

    logs = ActorLogs(tmp_path)
    logs.add("learner-rank-0", 999_999_1)
    assert logs.failure_tail(RuntimeError("the data ran out")) is None
