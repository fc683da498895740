"""Faults on a real local Ray cluster: rollout workers SIGKILLed mid-rollout and mid-weight-sync are
replaced, their calls re-dispatched (no completion lost or scored twice) and the replacements given
the current weights; actors that do not start in time are named."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.runtime import session
from vrft.orchestrator.runtime.faults import RunStopped, describe
from vrft.orchestrator.train import loop
from vrft.verifiers import RewardSpec

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


def step_records(run_dir: Path) -> dict[int, dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in records if "step" in r and not r.get("summary")}


def test_rollout_workers_killed_mid_step_are_replaced(ray_cluster, tiny_model, color_data, tmp_path, monkeypatch):
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=6",
                               "learner.world_size=1", "verifier.num_actors=1", "logging.wandb=false",
                               "logging.rollouts_every=0", "rollout.max_worker_restarts=2", "sync.timeout_s=30"])
    killed = {}
    real_step = loop.grpo_step

    def grpo_step(cfg, actors, pending, step, *args, **kwargs):
        if step == 3:  # step 3's two rollout calls are in flight, one on each worker: kill worker 0
            killed[3] = actors.workers.pids[0]
            os.kill(killed[3], signal.SIGKILL)
        if step == 5:  # kill worker 1 as step 5's weights go out (its receive call is in flight)
            send = actors.learner.send_weights

            def send_weights(*a, **kw):
                if 5 not in killed:
                    killed[5] = actors.workers.pids[1]
                    os.kill(killed[5], signal.SIGKILL)
                return send(*a, **kw)

            monkeypatch.setattr(actors.learner, "send_weights", send_weights)
        return real_step(cfg, actors, pending, step, *args, **kwargs)

    monkeypatch.setattr(loop, "grpo_step", grpo_step)
    loop.train(cfg, tmp_path)

    steps = step_records(tmp_path)
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    groups, n = cfg.data.prompts_per_step, cfg.rollout.n
    scored_before = 0.0
    for s, r in steps.items():
        # Every group of the step, each with all its completions, scored exactly once.
        assert r["rollout/groups"] == groups and r["rollout/completions"] == groups * n, (s, r)
        assert r["verifier/scored"] - scored_before == groups * n, (s, r["verifier/scored"])
        scored_before = r["verifier/scored"]
        assert r["rollout/tokens"] > 0
        assert r["rollout/worker_restarts"] == (2.0 if s >= 5 else 1.0 if s >= 3 else 0.0), s
        assert r["rollout/redispatched"] == (1.0 if s >= 3 else 0.0), s  # the sync lost no rollout
        # The replacements sample with the current weights from the next step on (sync mode: no lag).
        assert r["policy_version"] == s and r["rollout/policy_version_min"] == s - 1, s
    assert set(killed) == {3, 5} and None not in killed.values()


def test_past_max_worker_restarts_the_run_stops_naming_the_worker(ray_cluster, tiny_model, color_data, tmp_path,
                                                                  monkeypatch):
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=2",
                               "learner.world_size=1", "verifier.num_actors=1", "logging.wandb=false",
                               "logging.rollouts_every=0", "rollout.max_worker_restarts=0"])
    real_step, pid = loop.grpo_step, {}

    def grpo_step(cfg, actors, pending, step, *args, **kwargs):
        if step == 2:
            pid[0] = actors.workers.pids[0]
            os.kill(pid[0], signal.SIGKILL)
        return real_step(cfg, actors, pending, step, *args, **kwargs)

    monkeypatch.setattr(loop, "grpo_step", grpo_step)
    with pytest.raises(RunStopped) as stopped:
        loop.train(cfg, tmp_path)
    line = str(stopped.value)
    assert line.startswith(f"rollout worker 0 (pid {pid[0]}): ") and "died" in line, line
    assert line.endswith("rollout.max_worker_restarts=0 reached") and "\n" not in line, line
    assert not (tmp_path / "checkpoints" / "step_000002").exists()  # the step that lost it never finished


def test_start_up_timeout_names_the_actor(ray_cluster, tiny_model, color_data):
    """An actor not up within run.start_timeout_s stops the run with a line naming it (and is
    killed: nothing is left holding the cluster's resources)."""
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}",
                               "run.start_timeout_s=0.001", "learner.world_size=1", "verifier.num_actors=1"])
    with pytest.raises(RunStopped, match=r"^rollout worker 0: did not start within 0.001 s"):
        session.start_rollout(cfg, tiny_model, [{"num_cpus": 1}] * cfg.rollout.num_workers)
    with pytest.raises(RunStopped, match=r"^verifier actor 0: did not start"):
        session.start_pool(cfg, {"": [RewardSpec(name="format")]})
    with pytest.raises(Exception) as failed:
        session.start_learner(cfg, cfg.learner, tiny_model, 1, 0, [{"num_cpus": 1}])
    assert describe(failed.value).startswith("learner rank 0: did not start within 0.001 s"), describe(failed.value)


class _SendFailed(RuntimeError):
    """What LearnerGroup raises when learner rank 0's send failed in the client (RayTaskError's shape)."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


class _Learner:
    """The learner group's weight-sync calls; the first send fails as a sync does when worker 1 died
    mid-update and worker 0's update failed with it."""

    def __init__(self):
        self.calls: list[str] = []

    def sync_endpoint(self):
        return "127.0.0.1", 0

    def init_weight_transfer(self, backend, client, options, timeout_s=None):
        self.calls.append("init")

    def plan(self, bucket_mb):
        return [{"dtype": "float32", "numel": 1, "entries": []}]

    def send_weights(self, version, timeout_s=None):
        from vrft.learner.group import RankFailed
        from vrft.rollout.client import UpdateFailed

        self.calls.append("send")
        if self.calls.count("send") == 1:
            failed = UpdateFailed("update_weights", {0: (False, "RuntimeError: gloo: connection closed"),
                                                     1: (True, "died")})
            raise RankFailed(0, None, _SendFailed(failed))
        return {"bytes": 4.0, "buckets": 1.0}


def test_a_sync_failed_by_a_death_replaces_every_worker_whose_update_failed(ray_cluster, tiny_model, color_data):
    """Worker 0 lived, but its update failed beside worker 1's death: its weights may be half-updated,
    so it is replaced too (not counted as a restart), and the sync re-forms the transfer and retries."""
    from vrft.orchestrator.runtime.rollout_pool import RolloutWorkers

    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "rollout.num_workers=2",
                               "rollout.max_worker_restarts=1", "learner.world_size=1"])
    workers = RolloutWorkers(cfg, tiny_model, [{"num_cpus": 0.5}] * 2)
    try:
        before = list(workers.pids)
        learner = _Learner()
        workers.connect(learner, "gloo", 1.0)
        metrics = workers.sync(1, 1.0)
        assert learner.calls == ["init", "send", "init", "send"]  # re-formed whole, then sent again
        assert workers.restarts == 1 and metrics["rollout/replaced_after_failed_update"] == 1.0
        assert all(a != b for a, b in zip(before, workers.pids, strict=True)), (before, workers.pids)
        assert workers.version == 1 and workers.live() == [0, 1]
    finally:
        workers.kill()
