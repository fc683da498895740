"""Where actors go: Ray placement groups for the learner ranks and the rollout engines.

- separate:  learner ranks in one PACKed group of 1-GPU bundles; each engine its own bundle of
             `tensor_parallel_size` GPUs. Rollouts and learning can overlap (async mode).
- colocated: bundle i (1 GPU) holds learner rank i and engine i, each asking a fraction of the GPU;
             the engine sleeps (frees its memory) while the learner trains and wakes for the sync.
On CPU the same groups are made of CPU bundles, so the same code path runs in tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from vrft.orchestrator.config.schema import EngineSpec, TrainConfig


@dataclass
class Placement:
    learner: list[dict]  # Ray .options() per learner rank
    rollout: list[dict]  # Ray .options() per rollout worker
    groups: list

    def release(self) -> None:
        for pg in self.groups:
            try:
                remove_placement_group(pg)
            except Exception:  # already gone with the cluster
                pass


def _in(pg, index: int, threads: int | None = None, **resources) -> dict:
    """Actor options for bundle `index` of `pg`. With `threads`, the process starts with
    OMP_NUM_THREADS = threads: Ray sets it to the actor's num_cpus, and some CPU kernels keep the
    OpenMP team size they started with whatever torch.set_num_threads says later (a learner step
    on 2 threads was 20% slower under OMP_NUM_THREADS=1; docs/measurements.md)."""
    strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=index,
                                                placement_group_capture_child_tasks=True)
    options = {"scheduling_strategy": strategy, **resources}
    if threads and threads != resources.get("num_cpus"):  # Ray's own setting is right otherwise
        options["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(threads)}}
    return options


def _bundle(cpus: float, gpus: float) -> dict:
    bundle = {"CPU": cpus}
    if gpus:
        bundle["GPU"] = gpus
    return bundle


def check_placement(cfg: TrainConfig) -> None:
    """Config errors that placement would only find after minutes of waiting for resources."""
    rc, lc = cfg.rollout, cfg.learner
    on_gpus = rc.num_gpus_per_worker > 0 and lc.num_gpus_per_rank > 0
    if cfg.sync.backend == "nccl" and rc.placement == "colocated":
        raise ValueError("sync.backend=nccl with rollout.placement=colocated: NCCL refuses two ranks on one GPU "
                         "(learner rank i and engine i share it); use sync.backend=ipc or auto")
    if cfg.sync.backend == "ipc" and (rc.placement != "colocated" or not on_gpus):
        raise ValueError("sync.backend=ipc needs rollout.placement=colocated on GPUs (CUDA IPC maps memory "
                         "of the same GPU); use sync.backend=auto")
    if cfg.sync.backend == "nccl" and not on_gpus:
        raise ValueError("sync.backend=nccl needs GPUs for the rollout workers and the learner "
                         "(rollout.num_gpus_per_worker, learner.num_gpus_per_rank); use sync.backend=auto")
    if rc.placement == "colocated":
        if rc.num_workers != lc.world_size:
            raise ValueError(f"rollout.placement=colocated needs rollout.num_workers "
                             f"({rc.num_workers}) == learner.world_size ({lc.world_size})")
        if cfg.run.mode == "async":
            raise ValueError("run.mode=async needs rollout.placement=separate: colocated engines "
                             "sleep while the learner trains")
        if rc.tensor_parallel_size != 1:
            raise ValueError("rollout.placement=colocated supports tensor_parallel_size=1 only")
        if rc.engine == "vllm" and not rc.num_gpus_per_worker:
            raise ValueError("rollout.placement=colocated with rollout.engine=vllm needs GPUs "
                             "(rollout.num_gpus_per_worker > 0): vLLM's CPU backend cannot sleep")


def gpus_needed(cfg: TrainConfig | EngineSpec) -> int:
    """GPUs a run asks for: the most of its phases — SFT (the learner alone), GRPO (learner and engines
    as placed: colocated bundles hold one GPU each; separate engines have their own) and the engines
    alone when they evaluate after training. Engines started alone (EngineSpec) need their own."""
    rc = cfg.rollout
    if isinstance(cfg, EngineSpec):
        need = rc.num_workers * rc.num_gpus_per_worker * rc.tensor_parallel_size
        return int(need) + (need % 1 > 0)
    lc = cfg.learner
    sft = lc.world_size * lc.num_gpus_per_rank
    engines = rc.num_workers * rc.num_gpus_per_worker * rc.tensor_parallel_size
    if rc.placement == "colocated":
        grpo = lc.world_size * (1.0 if lc.num_gpus_per_rank or rc.num_gpus_per_worker else 0.0)
    else:
        grpo = sft + engines
    need = max(sft, engines, grpo if cfg.run.steps > 0 else 0.0)
    return int(need) + (need % 1 > 0)


def cpus_needed(cfg: TrainConfig | EngineSpec) -> float:
    """Logical CPUs a run's actors ask for: learner ranks, and for GRPO the engines and verifiers too
    (every actor needs its share even when the machine has fewer cores than actors); the engines alone
    for an EngineSpec."""
    rc = cfg.rollout
    if isinstance(cfg, EngineSpec):
        return rc.num_workers * rc.num_cpus_per_worker
    lc = cfg.learner
    need = lc.world_size * lc.num_cpus_per_rank
    if cfg.run.steps > 0:
        need += rc.num_workers * rc.num_cpus_per_worker + cfg.verifier.num_actors
    return need


def shortfall(cfg: TrainConfig | EngineSpec, resources: dict) -> str | None:
    """What a cluster with `resources` (ray.cluster_resources()) lacks for this run, in one line."""
    rc = cfg.rollout
    if isinstance(cfg, EngineSpec):
        missing = [f"needs {need:g} {kind} ({rc.num_workers} engines x {per:g}), cluster has {have:g}"
                   for kind, need, per, have in (
                       ("GPUs", gpus_needed(cfg), rc.num_gpus_per_worker * rc.tensor_parallel_size,
                        resources.get("GPU", 0.0)),
                       ("CPUs", cpus_needed(cfg), rc.num_cpus_per_worker, resources.get("CPU", 0.0)))
                   if need > have]
        return "; ".join(missing) or None
    lc = cfg.learner
    missing = []
    gpus, have_gpus = gpus_needed(cfg), resources.get("GPU", 0.0)
    if gpus > have_gpus:
        parts = [f"{lc.world_size} learner ranks x {lc.num_gpus_per_rank:g}"] if lc.num_gpus_per_rank else []
        if cfg.run.steps > 0 and rc.num_gpus_per_worker:
            parts.append(f"{rc.num_workers} engines x {rc.num_gpus_per_worker * rc.tensor_parallel_size:g}"
                         f" ({rc.placement})")
        missing.append(f"needs {gpus} GPUs ({', '.join(parts)}), cluster has {have_gpus:g}")
    cpus, have_cpus = cpus_needed(cfg), resources.get("CPU", 0.0)
    if cpus > have_cpus:
        missing.append(f"needs {cpus:g} CPUs ({lc.world_size} learner ranks x {lc.num_cpus_per_rank:g}"
                       + (f", {rc.num_workers} engines x {rc.num_cpus_per_worker:g}, "
                          f"{cfg.verifier.num_actors} verifiers x 1" if cfg.run.steps > 0 else "")
                       + f"), cluster has {have_cpus:g}")
    return "; ".join(missing) or None


def place(cfg: TrainConfig, timeout_s: float = 600.0) -> Placement:
    check_placement(cfg)
    rc, lc = cfg.rollout, cfg.learner
    if cfg.run.steps == 0:  # the SFT phase alone: no engines to place
        pg = placement_group([_bundle(lc.num_cpus_per_rank, lc.num_gpus_per_rank) for _ in range(lc.world_size)],
                             strategy="PACK")
        ray.get(pg.ready(), timeout=timeout_s)
        return Placement(learner=[_in(pg, i, lc.torch_threads, num_cpus=lc.num_cpus_per_rank,
                                      num_gpus=lc.num_gpus_per_rank) for i in range(lc.world_size)],
                         rollout=[], groups=[pg])
    if rc.placement == "colocated":
        gpus = 1.0 if lc.num_gpus_per_rank or rc.num_gpus_per_worker else 0.0
        pg = placement_group([_bundle(lc.num_cpus_per_rank + rc.num_cpus_per_worker, gpus)
                              for _ in range(lc.world_size)], strategy="PACK")
        ray.get(pg.ready(), timeout=timeout_s)
        share = 0.5 if gpus else 0.0
        return Placement(
            learner=[_in(pg, i, lc.torch_threads, num_cpus=lc.num_cpus_per_rank, num_gpus=share)
                     for i in range(lc.world_size)],
            rollout=[_in(pg, i, rc.torch_threads, num_cpus=rc.num_cpus_per_worker, num_gpus=share)
                     for i in range(rc.num_workers)],
            groups=[pg])
    learner_pg = placement_group([_bundle(lc.num_cpus_per_rank, lc.num_gpus_per_rank)
                                  for _ in range(lc.world_size)], strategy="PACK")
    engine_gpus = rc.num_gpus_per_worker * rc.tensor_parallel_size
    rollout_pg = placement_group([_bundle(rc.num_cpus_per_worker, engine_gpus)
                                  for _ in range(rc.num_workers)], strategy="PACK")
    ray.get([learner_pg.ready(), rollout_pg.ready()], timeout=timeout_s)
    return Placement(
        learner=[_in(learner_pg, i, lc.torch_threads, num_cpus=lc.num_cpus_per_rank,
                     num_gpus=lc.num_gpus_per_rank) for i in range(lc.world_size)],
        rollout=[_in(rollout_pg, i, rc.torch_threads, num_cpus=rc.num_cpus_per_worker, num_gpus=engine_gpus)
                 for i in range(rc.num_workers)],
        groups=[learner_pg, rollout_pg])
