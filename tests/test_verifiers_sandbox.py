"""The killable scoring process and call_with_timeout, without Ray."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from vrft.verifiers.sandbox import Sandbox
from vrft.verifiers.timeout import CallTimeout, call_with_timeout

PLUGINS = (f"{__package__}." if __package__ else "") + "test_verifiers_plugins"
importlib.import_module(PLUGINS)
SPECS = [{"name": f"{PLUGINS}:misbehave", "weight": 1.0, "options": {}}, {"name": "format", "weight": 1.0, "options": {}}]


def test_sandbox_kills_hangs_and_survives_crashes() -> None:
    box = Sandbox(SPECS, sys_path=sys.path)
    try:
        items = [(c, {}) for c in ["ok", "HANG_PY", "ok", "EXIT", "RAISE", "HANG_REGEX", "ok"]]
        t0 = time.monotonic()
        out = box.score(items, timeout_s=0.5)
        took = time.monotonic() - t0
        assert [o[0] for o in out] == ["ok", "timeout", "ok", "crash", "ok", "timeout", "ok"]
        assert out[0][1] == {f"{PLUGINS}:misbehave": 0.5, "format": 0.0, "total": 0.5}
        assert out[4][1][f"{PLUGINS}:misbehave"] == 0.0 and "boom" in out[4][2][0]
        assert out[1][3] < 1.0 and out[5][3] < 1.0  # killed at the deadline
        assert box.restarts == 3 and took < 60
    finally:
        box.kill()


def test_sandbox_reports_a_child_that_cannot_start() -> None:
    box = Sandbox([{"name": "no_such_module_xyz:f", "weight": 1.0, "options": {}}])
    out = box.score([("a", {}), ("b", {})], timeout_s=1.0)
    assert [o[0] for o in out] == ["crash", "crash"]
    assert "no_such_module_xyz" in out[0][2][0]


def test_child_dies_with_its_parent() -> None:
    # A parent process that starts a sandbox stuck in an endless loop, then is SIGKILLed: the
    # child must not survive as an orphan burning CPU.
    code = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = {sys.path!r}
        from vrft.verifiers.sandbox import Sandbox
        box = Sandbox({SPECS!r})
        box.wait_ready()
        print(box.pid, flush=True)
        box.score([("HANG_PY", {{}})], timeout_s=3600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the scoring child outlived its parent")


def _spin(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


def test_call_with_timeout_on_the_main_thread_keeps_an_outer_timer() -> None:
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        assert call_with_timeout(_spin, (0.05,), 0.5) == "done"
        with pytest.raises(CallTimeout):
            call_with_timeout(_spin, (5.0,), 0.2)
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 1.0  # the outer timer still runs
        time.sleep(1.0)
        assert fired == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_call_with_timeout_off_the_main_thread_uses_a_process() -> None:
    got: dict[str, object] = {}

    def work() -> None:
        got["ok"] = call_with_timeout(_spin, (0.01,), 30.0, ref=f"{__name__}:_spin")
        t0 = time.monotonic()
        try:
            call_with_timeout(_spin, (60.0,), 0.3, ref=f"{__name__}:_spin")
        except CallTimeout:
            got["timeout_after"] = time.monotonic() - t0
        try:
            call_with_timeout(_spin, (0.0,), 1.0)  # off the main thread a ref is required
        except ValueError:
            got["needs_ref"] = True

    t = threading.Thread(target=work)
    t.start()
    t.join(120)
    assert got == {"ok": "done", "timeout_after": pytest.approx(0.3, abs=2.5), "needs_ref": True}
