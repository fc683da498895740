"""The actors of a run: Ray itself, the rollout workers, the verifier pool, the learner group, and
the weight-sync group that joins learner rank 0 to every rollout worker."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import ray

from learner import LearnerGroup
from learner.config import LearnerConfig
from orchestrator.config import TrainConfig
from orchestrator.faults import RunStopped, wait_started
from orchestrator.placement import cpus_needed, shortfall
from orchestrator.rollout_pool import RolloutWorkers
from verifiers import RewardSpec, VerifierPool

log = logging.getLogger("vrft")


def _init_ray(**options) -> None:
    """`ray.init`, keeping the driver's SIGTERM handler: Ray replaces it with its own (exit 15, with
    its core's stack dump), and vrft's unwinds SIGTERM as it does Ctrl-C (actors stopped, exit 130)."""
    handler = signal.getsignal(signal.SIGTERM)
    ray.init(**options)
    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def start_ray(cfg: TrainConfig) -> bool:
    """Connect to the cluster (`ray job submit`, RAY_ADDRESS, or run.ray_address) or start a local
    Ray sized for this run. Returns whether we started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    address = cfg.run.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        _init_ray(address=address, log_to_driver=True)
        wait_for_cluster(cfg)
        return False
    needed = cpus_needed(cfg)
    # Local mode lets no one in: every listener on 127.0.0.1, token authentication on.
    # Ray 2.60 binds gcs_server, raylet, workers and agents to loopback only when the node address
    # is exactly 127.0.0.1, and ray.init rewrites a given 127.0.0.1 to the machine's outward IP
    # unless it believes it is single-node (ENABLE_RAY_CLUSTER, false only on macOS/Windows).
    from ray._private import ray_constants

    from learner.weight_sync import loopback_interface

    lo = loopback_interface()
    # The actors inherit these: gloo's and NCCL's pair sockets (weight sync, DeepSpeed) on loopback.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", lo)
    os.environ.setdefault("NCCL_SOCKET_IFNAME", lo)
    try:  # Ray >= 2.52 (token authentication); its default for a new cluster, forced if disabled
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
    except ImportError:
        _enable_token_auth = None
    if _enable_token_auth is not None:
        if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
            log.warning("RAY_AUTH_MODE=%s ignored: a local run keeps Ray's token authentication on",
                        os.environ["RAY_AUTH_MODE"])
        _enable_token_auth()
    cluster_mode, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    try:
        _init_ray(num_cpus=max(os.cpu_count() or 1, int(needed + 0.999)),
                  include_dashboard=cfg.run.dashboard, dashboard_host="127.0.0.1",
                  log_to_driver=True, configure_logging=False, _node_ip_address="127.0.0.1")
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
    return True


def wait_for_cluster(cfg: TrainConfig, poll_s: float = 5.0) -> None:
    """Before any actor: a joined cluster must hold the run's placement, or grow to it within
    `run.cluster_wait_s` (autoscaling); otherwise one line naming what is missing, never a silent hang."""
    deadline = time.monotonic() + cfg.run.cluster_wait_s
    missing = shortfall(cfg, ray.cluster_resources())
    if missing and cfg.run.cluster_wait_s > 0:
        log.warning("cluster too small (%s): waiting up to %gs for it to grow (run.cluster_wait_s)",
                    missing, cfg.run.cluster_wait_s)
    while missing and time.monotonic() < deadline:
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        missing = shortfall(cfg, ray.cluster_resources())
    if missing:
        waited = f" after waiting {cfg.run.cluster_wait_s:g}s (run.cluster_wait_s)" if cfg.run.cluster_wait_s else ""
        ray.shutdown()
        raise SystemExit(f"vrft: error: the Ray cluster cannot hold this run{waited}: {missing}")


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
    slowest kind, not their sum. If one kind fails, the others are stopped and its error raised."""
    with ThreadPoolExecutor(3, thread_name_prefix="vrft-start") as threads:
        futures = {"workers": threads.submit(start_rollout, cfg, model_path, placement.rollout),
                   "pool": threads.submit(start_pool, cfg, routes),
                   "learner": threads.submit(start_learner, cfg, cfg.learner, model_path, cfg.run.steps, pad_id,
                                             placement.learner)}
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


def start_rollout(cfg: TrainConfig, model_path: str, placement: list[dict]) -> RolloutWorkers:
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


def sync_backend(cfg: TrainConfig) -> str:
    if cfg.sync.backend != "auto":
        return cfg.sync.backend
    # The driver may sit on a CPU-only head node: decide from where the actors are placed.
    on_gpus = cfg.rollout.num_gpus_per_worker > 0 and cfg.learner.num_gpus_per_rank > 0
    return "nccl" if on_gpus else "gloo"


def connect_weight_sync(actors: Actors, cfg: TrainConfig) -> None:
    """Learner rank 0 is rank 0 of the group; rollout worker i follows (one rank per engine
    process). The group is re-formed whole when a worker is replaced (rollout_pool.py)."""
    actors.backend = sync_backend(cfg)
    actors.workers.connect(actors.learner, actors.backend, cfg.sync.bucket_mb)


def sync_weights(actors: Actors, version: int, bucket_mb: float) -> dict[str, float]:
    """Broadcast the learner's weights to every worker (replacements included); every worker
    must report the new version."""
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
