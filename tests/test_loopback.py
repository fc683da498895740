"""Local mode lets no one in: with the actors of a run up (rollout workers, verifier pool, a 2-rank
DeepSpeed learner and the weight-sync group joining them), every listening socket of the driver and
of every process Ray started is on loopback, and Ray's token authentication is on."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import psutil
import ray

from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.runtime import cluster, session
from vrft.orchestrator.runtime.placement import place
from vrft.rollout.processor import load_processor

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


def _listeners() -> list[tuple[int, str, str, int]]:
    """(pid, name, ip, port) of every LISTEN socket of this process and its descendants."""
    me = psutil.Process()
    out = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out += [(proc.pid, name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return (mapped or addr).is_loopback


def test_every_listener_of_a_local_run_is_on_loopback(tiny_model, color_data):
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}",
                               "rollout.num_workers=1", "verifier.num_actors=1", "logging.wandb=false"])
    assert not ray.is_initialized()
    started = cluster.start_ray(cfg)
    actors, placement = None, None
    try:
        assert started
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        assert is_token_auth_enabled()
        placement = place(cfg)
        actors = session.Actors(workers=session.start_rollout(cfg, tiny_model, placement.rollout),
                                pool=session.start_pool(cfg, [{"name": "format"}]))
        pad = load_processor(tiny_model).tokenizer.pad_token_id
        actors.learner = session.start_learner(cfg, cfg.learner, tiny_model, 1, pad, placement.learner)
        session.connect_weight_sync(actors, cfg)  # the TCPStore and gloo pairs of weight sync are up now
        found = _listeners()
        names = {name for _, name, _, _ in found}
        assert {"gcs_server", "raylet"} <= names, names
        assert any("LearnerRank" in n for n in names), names  # the learners' stores were seen
        exposed = [entry for entry in found if not _loopback(entry[2])]
        assert not exposed, exposed
    finally:
        session.shutdown(actors, placement, started)
