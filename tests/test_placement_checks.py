"""Placement mistakes are config errors found before Ray starts, each named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrft.orchestrator.config.schema import ConfigError, load_config
from vrft.orchestrator.runtime.placement import check_placement

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


@pytest.mark.parametrize("overrides, needle", [
    (["rollout.placement=colocated", "rollout.num_workers=1"], "num_workers"),
    (["rollout.placement=colocated", "run.mode=async"], "run.mode=async"),
    (["rollout.placement=colocated", "rollout.engine=vllm", "rollout.tensor_parallel_size=2"], "tensor_parallel_size"),
    (["rollout.placement=colocated", "rollout.engine=vllm"], "cannot sleep"),
    # NCCL refuses two ranks on one GPU: colocated weights go by CUDA IPC.
    (["rollout.placement=colocated", "sync.backend=nccl", "rollout.num_gpus_per_worker=0.5",
      "learner.num_gpus_per_rank=0.5"], "NCCL refuses two ranks on one GPU"),
    (["sync.backend=ipc", "rollout.num_gpus_per_worker=1", "learner.num_gpus_per_rank=1"], "ipc needs"),
    (["rollout.placement=colocated", "sync.backend=ipc"], "ipc needs"),  # no GPUs
    (["sync.backend=nccl"], "nccl needs GPUs"),
])
def test_bad_placement_is_refused(overrides, needle):
    cfg = load_config(CONFIG, ["model.path=m", "data.path=d", *overrides])
    with pytest.raises(ValueError, match=needle) as err:
        check_placement(cfg)
    assert "\n" not in str(err.value)


def test_good_placements_pass():
    for placement in ("separate", "colocated"):
        check_placement(load_config(CONFIG, ["model.path=m", "data.path=d", f"rollout.placement={placement}"]))


def test_auto_backend_by_placement():
    from vrft.orchestrator.runtime.rollout_pool import engine_options, sync_backend

    def backend(*overrides):
        return sync_backend(load_config(CONFIG, ["model.path=m", "data.path=d", *overrides]))

    gpus = ["rollout.num_gpus_per_worker=0.5", "learner.num_gpus_per_rank=0.5"]
    assert backend() == "gloo"
    assert backend(*gpus) == "nccl"
    assert backend(*gpus, "rollout.placement=colocated") == "ipc"
    vllm = load_config(CONFIG, ["model.path=m", "data.path=d", "rollout.engine=vllm", *gpus])
    # vLLM's CuMem allocator (sleep mode) only where the engine sleeps.
    assert engine_options(vllm)["enable_sleep_mode"] is False and engine_options(vllm)["weight_transfer"] == "nccl"


@pytest.mark.parametrize("frozen", ["learner.lora_rank=8", "learner.freeze_vision=true"])
def test_sleep_level_2_with_frozen_weights_is_refused_at_load(frozen):
    """Level 2 wakes the engine's weights uninitialised and the sync refills only trained ones."""
    vllm = ["model.path=m", "data.path=d", "rollout.engine=vllm", "rollout.placement=colocated",
            "rollout.num_workers=2", "learner.world_size=2"]
    with pytest.raises(ConfigError, match=r"rollout.vllm.sleep_level=2 with learner\.") as err:
        load_config(CONFIG, [*vllm, "rollout.vllm.sleep_level=2", frozen])
    assert "\n" not in str(err.value)
    load_config(CONFIG, [*vllm, "rollout.vllm.sleep_level=1", frozen])  # level 1 keeps them
    load_config(CONFIG, [*vllm, "rollout.vllm.sleep_level=2"])  # full fine-tuning sends them all


def test_engines_alone_ask_for_the_engines_only():
    # `vrft eval` starts rollout engines and nothing else: no learner rank, no verifier actor is counted
    # (a run config would add them), and the weights never move (gloo, the transfer never formed).
    from vrft.orchestrator.config.schema import EngineSpec
    from vrft.orchestrator.runtime.placement import cpus_needed, gpus_needed, shortfall
    from vrft.orchestrator.runtime.rollout_pool import sync_backend

    spec = EngineSpec.model_validate({"model": {"path": "m"}, "rollout": {
        "num_workers": 3, "num_cpus_per_worker": 2, "num_gpus_per_worker": 0.5}})
    assert cpus_needed(spec) == 6
    assert gpus_needed(spec) == 2  # 1.5 GPUs round up
    assert sync_backend(spec) == "gloo"
    assert shortfall(spec, {"CPU": 6.0, "GPU": 2.0}) is None
    assert shortfall(spec, {"CPU": 4.0, "GPU": 1.0}) == ("needs 2 GPUs (3 engines x 0.5), cluster has 1; "
                                                         "needs 6 CPUs (3 engines x 2), cluster has 4")
