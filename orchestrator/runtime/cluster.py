"""Ray for a run: join the cluster a job was submitted to, or start a private local one sized for
the run. Light on purpose (no torch): `vrft train` starts Ray here while another thread imports the
training loop (`start_ray_while_importing`), so Ray's daemons and the driver's imports, each about
one core's work for 2-4 s, overlap on a small machine (docs/measurements.md)."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import threading
import time

import ray

from vrft.orchestrator.config.schema import EngineSpec, TrainConfig
from vrft.orchestrator.runtime.placement import cpus_needed, shortfall

log = logging.getLogger("vrft")


def loopback_interface() -> str:
    """The loopback interface's name (`lo` on Linux, `lo0` on macOS), for GLOO_SOCKET_IFNAME (the
    learner's ranks have their own copy: learner/ must not import orchestrator/)."""
    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in names if n in ("lo", "lo0")), "lo")


def _init_ray(**options) -> None:
    """`ray.init`, keeping the driver's SIGTERM handler: Ray replaces it with its own (exit 15, with
    its core's stack dump), and vrft's unwinds SIGTERM as it does Ctrl-C (actors stopped, exit 130)."""
    handler = signal.getsignal(signal.SIGTERM)
    ray.init(**options)
    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def start_ray(cfg: TrainConfig | EngineSpec) -> bool:
    """Connect to the cluster (`ray job submit`, RAY_ADDRESS, or run.ray_address) or start a local
    Ray sized for this run. Returns whether we started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    address = cfg.run.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        # A joined cluster keeps Ray's copy of the actors' lines in the job's log: their files are on
        # other nodes, where RUN_DIR/logs cannot copy them from (actor_logs.py).
        _init_ray(address=address, log_to_driver=True)
        wait_for_cluster(cfg)
        return False
    needed = cpus_needed(cfg)
    # Local mode lets no one in: every listener on 127.0.0.1, token authentication on.
    # Ray 2.60 binds gcs_server, raylet, workers and agents to loopback only when the node address
    # is exactly 127.0.0.1, and ray.init rewrites a given 127.0.0.1 to the machine's outward IP
    # unless it believes it is single-node (ENABLE_RAY_CLUSTER, false only on macOS/Windows).
    from ray._private import ray_constants

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
                  # The actors' own output stays in Ray's per-worker files, copied to RUN_DIR/logs
                  # (actor_logs.py), not on the console with Ray's prefixes and dedup notices.
                  log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1")
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
    return True


def wait_for_cluster(cfg: TrainConfig | EngineSpec, poll_s: float = 5.0) -> None:
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


def start_ray_while_importing(cfg: TrainConfig, module: str) -> bool:
    """`start_ray(cfg)` on this thread while another imports `module`; both done on return (an
    import error is raised here, after stopping a Ray this started). Ray stays on the main thread:
    `ray.init` spends little of the driver's own CPU (its daemons are other processes), while the
    import does, so the pair shares the GIL well; the other way round measured erratic."""
    failed: list[BaseException] = []

    def load() -> None:
        try:
            importlib.import_module(module)
        except BaseException as err:  # noqa: BLE001 - raised on the main thread below
            failed.append(err)

    importer = threading.Thread(target=load, name="vrft-import", daemon=True)
    importer.start()
    started = start_ray(cfg)
    importer.join()
    if failed:
        if started:
            ray.shutdown()
        raise failed[0]
    return started
