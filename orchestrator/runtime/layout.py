"""The single-node CPU layout: what a local run on a CPU-only machine uses when its config leaves the
layout open (`run.layout: auto`, the default).

On one CPU machine the distributed layout costs more than it gives: two learner ranks split each
matmul's cores and add gradient all-reduces, two rollout workers halve each other's threads, and
ZeRO on a single rank partitions nothing while flattening and copying every gradient. So, for each
of these keys the config does not set itself:

- `rollout.num_workers` 1 and `learner.world_size` 1;
- torch threads: every core to the rollout worker and every core to the learner in sync mode (the
  phases take turns), half the cores each in async mode (they run at once);
- `learner.zero_stage` 0 on a single rank without offloading (ZeRO's stages only pay across ranks).

A key the config sets wins (the demo sets the distributed layout on purpose, to show it).
Measured in docs/measurements.md (`make bench-peer`). Never applied to a cluster (`run.ray_address`,
RAY_ADDRESS) or to a run that asks for GPUs.
"""

from __future__ import annotations

import os

from vrft.orchestrator.config.schema import TrainConfig


def uses_cpu_layout(cfg: TrainConfig) -> bool:
    rc, lc = cfg.rollout, cfg.learner
    local = not (cfg.run.ray_address or os.environ.get("RAY_ADDRESS"))
    cpu_only = rc.num_gpus_per_worker == 0 and lc.num_gpus_per_rank == 0 and rc.engine == "hf"
    return cfg.run.layout == "auto" and local and cpu_only


def cpu_layout(cfg: TrainConfig, cores: int | None = None) -> tuple[TrainConfig, str | None]:
    """The config with the open layout keys filled in, and a line saying what was chosen (None when
    nothing was: not a local CPU run, or every key set by the config)."""
    if not uses_cpu_layout(cfg):
        return cfg, None
    cores = cores or os.cpu_count() or 1
    rc, lc = cfg.rollout, cfg.learner
    rollout: dict = {} if "num_workers" in rc.model_fields_set else {"num_workers": 1}
    learner: dict = {} if "world_size" in lc.model_fields_set else {"world_size": 1}
    workers = rollout.get("num_workers", rc.num_workers)
    ranks = learner.get("world_size", lc.world_size)
    share = cores if cfg.run.mode == "sync" else max(1, cores // 2)
    if "torch_threads" not in rc.model_fields_set:
        rollout["torch_threads"] = max(1, share // workers)
    if "torch_threads" not in lc.model_fields_set:
        learner["torch_threads"] = max(1, share // ranks)
    if ranks == 1 and "zero_stage" not in lc.model_fields_set and not (lc.offload_optimizer or lc.offload_params):
        learner["zero_stage"] = 0
    if not rollout and not learner:
        return cfg, None
    cfg = cfg.model_copy(update={"rollout": rc.model_copy(update=rollout),
                                 "learner": lc.model_copy(update=learner)})
    rc, lc = cfg.rollout, cfg.learner
    chosen = ", ".join(f"{section}.{key}={value}" for section, keys in (("rollout", rollout), ("learner", learner))
                       for key, value in keys.items())
    return cfg, (f"layout: {rc.num_workers} rollout worker(s) x {rc.torch_threads} threads, {lc.world_size} "
                 f"learner rank(s) x {lc.torch_threads} threads, ZeRO-{lc.zero_stage} on {cores} cores "
                 f"(single-node CPU, run.layout=auto chose {chosen}; set them to choose)")
