"""The actors of a run: the rollout workers, the verifier pool, the learner group, and the
weight-sync group that joins learner rank 0 to every rollout worker (Ray itself: cluster.py)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import ray

from vrft.learner import LearnerGroup
from vrft.learner.config import LearnerConfig
from vrft.orchestrator.config.schema import EngineSpec, TrainConfig
from vrft.orchestrator.runtime.faults import RunStopped, wait_started
from vrft.orchestrator.runtime.rollout_pool import RolloutWorkers, sync_backend
from vrft.rollout.vllm_inputs import vllm_weight_prefixes
from vrft.verifiers import RewardSpec, VerifierPool

log = logging.getLogger("vrft")


@dataclass
class Actors:
    workers: RolloutWorkers
    pool: VerifierPool | None  # None until started
    learner: LearnerGroup | None = None
    backend: str = "gloo"
    version: int = 0


def start_actors(cfg: TrainConfig, model_path: str, routes: dict[str, list[RewardSpec]], pad_id: int,
                 placement) -> Actors:
    """The rollout workers, the verifier pool and the learner ranks, started at once: each kind
    waits for its own processes (imports, model load, DeepSpeed init), so start-up costs the
    slowest kind, not their sum. If one kind fails, the others are stopped and its error raised.

    Colocated, the learner starts only once the engines are up: a vLLM engine measures the GPU's
    free memory as it starts (its profiling run) and takes any change by another process in the
    meantime as its own, or finds its share gone; after an engine failed no learner is started."""
    colocated = cfg.rollout.placement == "colocated"
    with ThreadPoolExecutor(3, thread_name_prefix="vrft-start") as threads:
        futures = {"workers": threads.submit(start_rollout, cfg, model_path, placement.rollout),
                   "pool": threads.submit(start_pool, cfg, routes)}
        if not colocated or futures["workers"].exception() is None:  # exception() waits for it
            futures["learner"] = threads.submit(start_learner, cfg, cfg.learner, model_path, cfg.run.steps,
                                                pad_id, placement.learner)
    started, errors = {}, []
    for name, future in futures.items():
        try:
            started[name] = future.result()
        except BaseException as err:  # noqa: BLE001 - re-raised below, once the others are stopped
            errors.append(err)
    if errors:
        for kind in started.values():
            try:
                kind.kill() if isinstance(kind, RolloutWorkers) else kind.shutdown()
            except Exception as err:
                log.warning("shutdown: %s", err)
        raise errors[0]
    return Actors(**started)


def start_rollout(cfg: TrainConfig | EngineSpec, model_path: str, placement: list[dict]) -> RolloutWorkers:
    """The engines, started (or `RunStopped` naming the one that failed or overran
    run.start_timeout_s); a lost one is replaced during the run (rollout_pool.py)."""
    return RolloutWorkers(cfg, model_path, placement)


def start_pool(cfg: TrainConfig, routes: dict[str, list[RewardSpec]]) -> VerifierPool:
    """Every task's rewards in one pool: a completion is scored by its row's task's composition.
    Its actors must be up within run.start_timeout_s (the pool replaces any lost later)."""
    pool = VerifierPool(routes, num_actors=cfg.verifier.num_actors, timeout_s=cfg.verifier.timeout_s)
    actors = pool.actors()
    try:
        wait_started([a.pids.remote() for a in actors], [f"verifier actor {i}" for i in range(len(actors))],
                     cfg.run.start_timeout_s)
    except RunStopped:
        pool.shutdown()
        raise
    return pool


def logprob_temperature(cfg: TrainConfig, learner_cfg: LearnerConfig) -> float:
    """What the learner divides logits by: `learner.logprob_temperature`, else the sampling one."""
    if learner_cfg.logprob_temperature is not None:
        return learner_cfg.logprob_temperature
    return cfg.rollout.temperature


def start_learner(cfg: TrainConfig, learner_cfg: LearnerConfig, model_path: str, total_steps: int,
                  pad_id: int, placement: list[dict]) -> LearnerGroup:
    return LearnerGroup(model_path, learner_cfg, total_steps, pad_id,
                        trust_remote_code=cfg.model.trust_remote_code,
                        temperature=logprob_temperature(cfg, learner_cfg),
                        rank_options=placement, start_timeout_s=cfg.run.start_timeout_s)


def connect_weight_sync(actors: Actors, cfg: TrainConfig) -> None:
    """Learner rank 0 and every rollout worker's engine join one weight transfer (learner/transfer.py):
    vLLM's NCCL or CUDA-IPC engine on GPUs, vrft's gloo one on CPU. It is re-formed whole when a
    worker is replaced (rollout_pool.py). vLLM loads checkpoint names: the learner sends the
    model family's."""
    actors.backend = sync_backend(cfg)
    rename = None
    if cfg.rollout.engine == "vllm":
        info = actors.learner.info
        rename = vllm_weight_prefixes(info["model_type"], info["is_vlm"])
    actors.workers.connect(actors.learner, actors.backend, cfg.sync.bucket_mb, rename)


def sync_weights(actors: Actors, version: int, bucket_mb: float) -> dict[str, float]:
    """Send the learner's weights to every worker (replacements included); every worker must
    report the new version."""
    metrics = actors.workers.sync(version, bucket_mb)
    actors.version = version
    return metrics


def shutdown(actors: Actors | None, placement, started_ray: bool) -> None:
    """Best effort: every actor is killed and Ray stopped even if some step below fails."""
    if actors is not None:
        for stop in (lambda: actors.pool and actors.pool.shutdown(),
                     lambda: actors.learner and actors.learner.shutdown(),
                     lambda: actors.workers.kill()):
            try:
                stop()
            except Exception as err:
                log.warning("shutdown: %s", err)
    if placement is not None:
        placement.release()
    if started_ray and ray.is_initialized():
        ray.shutdown()
