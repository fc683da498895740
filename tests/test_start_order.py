"""`start_actors` (orchestrator/runtime/session.py): with separate placement the learner starts beside the
engines; colocated, only after every engine is up (vLLM measures the GPU's free memory while it
starts, and a learner loading onto the same GPU meanwhile would skew it). Fakes stand in for the
three kinds of actors: what is checked is the order of the calls."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.runtime import session

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


class _Kind:
    def __init__(self, name: str, events: list[str]):
        self.name, self.events = name, events

    def shutdown(self) -> None:
        self.events.append(f"{self.name} stopped")


def _fakes(monkeypatch, fail_engines: bool = False, wait_s: float = 1.0):
    """The engines' start waits (at most `wait_s`) for the learner's to begin, and notes whether it did."""
    events: list[str] = []
    learner_started = threading.Event()

    def start_rollout(cfg, model_path, placement):
        events.append("engines starting")
        events.append("learner began meanwhile" if learner_started.wait(wait_s) else "engines alone")
        if fail_engines:
            raise RuntimeError("engine 0 failed")
        events.append("engines up")
        return _Kind("engines", events)

    def start_learner(*args):
        events.append("learner starting")
        learner_started.set()
        return _Kind("learner", events)

    monkeypatch.setattr(session, "start_rollout", start_rollout)
    monkeypatch.setattr(session, "start_pool", lambda cfg, routes: _Kind("pool", events))
    monkeypatch.setattr(session, "start_learner", start_learner)
    return events


def _cfg(placement: str):
    return load_config(CONFIG, ["model.path=m", "data.path=d", f"rollout.placement={placement}",
                                "rollout.num_workers=2", "learner.world_size=2"])


@pytest.mark.parametrize("placement", ["separate", "colocated"])
def test_colocated_learner_starts_after_the_engines_separate_beside_them(monkeypatch, placement):
    events = _fakes(monkeypatch, wait_s=1.0 if placement == "colocated" else 60.0)
    actors = session.start_actors(_cfg(placement), "m", {}, 0, SimpleNamespace(rollout=[], learner=[]))
    assert actors.learner is not None and actors.workers is not None
    if placement == "colocated":
        assert "engines alone" in events
        assert events.index("learner starting") > events.index("engines up")
    else:
        assert "learner began meanwhile" in events  # started together: start-up costs the slowest


def test_colocated_engine_failure_starts_no_learner(monkeypatch):
    events = _fakes(monkeypatch, fail_engines=True, wait_s=1.0)
    with pytest.raises(RuntimeError, match="engine 0 failed"):
        session.start_actors(_cfg("colocated"), "m", {}, 0, SimpleNamespace(rollout=[], learner=[]))
    assert "learner starting" not in events and "pool stopped" in events
