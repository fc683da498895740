"""The single-node CPU layout (orchestrator/runtime/layout.py): what a local CPU run fills in when its config
leaves the layout open, and that a key the config sets always wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.runtime.layout import cpu_layout

ROOT = Path(__file__).parent.parent
PEER = ROOT / "configs" / "local" / "peer_cpu.yaml"  # leaves the layout open
DEMO = ROOT / "configs" / "local" / "demo_cpu.yaml"  # sets the distributed layout on purpose


def _cfg(path: Path = PEER, *overrides: str):
    return load_config(path, ["model.path=m", "data.path=d", *overrides])


def test_an_open_layout_gets_one_worker_one_rank_every_core_each_and_no_zero(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg, line = cpu_layout(_cfg(), cores=8)
    assert (cfg.rollout.num_workers, cfg.rollout.torch_threads) == (1, 8)
    assert (cfg.learner.world_size, cfg.learner.torch_threads, cfg.learner.zero_stage) == (1, 8, 0)
    assert "learner.zero_stage=0" in line and "8 cores" in line
    # async runs both phases at once: half the cores each
    cfg, _ = cpu_layout(_cfg(PEER, "run.mode=async"), cores=8)
    assert (cfg.rollout.torch_threads, cfg.learner.torch_threads) == (4, 4)


def test_keys_the_config_sets_win(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    demo = _cfg(DEMO)
    cfg, line = cpu_layout(demo, cores=8)
    assert line is None and cfg == demo  # the demo shows the distributed layout on purpose
    cfg, line = cpu_layout(_cfg(PEER, "learner.world_size=2", "rollout.torch_threads=3"), cores=8)
    assert (cfg.rollout.num_workers, cfg.rollout.torch_threads) == (1, 3)
    # two ranks: ZeRO stays as the schema says, and the cores are split between the ranks
    assert (cfg.learner.world_size, cfg.learner.torch_threads, cfg.learner.zero_stage) == (2, 4, 2)
    cfg, _ = cpu_layout(_cfg(PEER, "learner.zero_stage=2"), cores=2)
    assert cfg.learner.zero_stage == 2


@pytest.mark.parametrize("overrides,env", [
    (["run.layout=as_set"], {}),
    (["run.ray_address=auto"], {}),
    ([], {"RAY_ADDRESS": "127.0.0.1:6379"}),
    (["learner.num_gpus_per_rank=1", "rollout.num_gpus_per_worker=1"], {}),
])
def test_never_on_a_cluster_on_gpus_or_when_asked_not_to(monkeypatch, overrides, env):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = _cfg(PEER, *overrides)
    cfg, line = cpu_layout(before, cores=8)
    assert line is None and cfg == before
    assert cfg.learner.zero_stage == 2 and cfg.rollout.torch_threads is None
