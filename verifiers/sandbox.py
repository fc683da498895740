"""A killable child Python process that runs reward code: the hard timeout behind the pool and behind
math-verify off the main thread.

Why a process: a timeout inside the scoring process can only interrupt Python bytecode (SIGALRM, and
only on the main thread); a reward stuck in C code, a catastrophic regex in another engine, or a user
reward that never returns can only be stopped from outside. ``Sandbox`` keeps one child process,
feeds it work over a pipe and SIGKILLs it when one item overruns its deadline; the next item goes to
a fresh child (its start-up is not charged to any item). The child gets a minimal environment
(``CHILD_ENV``): reward code, a user's plugin included, never sees tokens or credentials.

Protocol (pickled messages over two pipes; the child's stdout/stderr stay free for user prints):
  parent → child ``("init", {"specs", "sys_path", "warmup"})``, child → ``("ready", pid)`` or
  ``("fatal", message)``; then ``("batch", [(completion, ground_truth), ...], budget_s)`` answered by
  one ``(scores, error_messages, seconds, rewards_that_gave_up)`` per item in order, or ``("call", "module:function", args)``
  answered by ``("ok", value)`` / ``("err", message)``.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from vrft.verifiers import budget

STARTUP_TIMEOUT_S = 120.0  # importing math-verify/sympy on a loaded 2-core box takes seconds
CHILD_ENV = frozenset({"PATH", "HOME", "LANG", "TZ", "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV", "PYTHONHASHSEED",
                       "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"})


_SPAWNER: concurrent.futures.ThreadPoolExecutor | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawner() -> concurrent.futures.ThreadPoolExecutor:
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="verifier-spawn")
        return _SPAWNER


class SandboxError(RuntimeError):
    """The child could not start (or start-up failed in reward code)."""


Outcome = tuple[str, dict[str, float] | None, list[str], float]  # (status, scores, errors, seconds)


class Sandbox:
    """One child scoring process. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        specs: Sequence[dict] | Mapping[str, Sequence[dict]] | None = None,
        sys_path: Sequence[str] = (),
        warmup: Sequence[str] = (),
    ) -> None:
        """`specs`: one composition, or compositions by route name (items then name their route)."""
        routes = ({r: list(s) for r, s in specs.items()} if isinstance(specs, Mapping)
                  else {"": list(specs)} if specs else None)
        self._init = {"routes": routes, "sys_path": list(sys_path), "warmup": list(warmup)}
        self._proc: subprocess.Popen | None = None
        self._to_child: Connection | None = None
        self._from_child: Connection | None = None
        self._ready = False
        self.restarts = 0  # children killed after a timeout or found dead

    # ---- life cycle ----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start a child if none is running; returns at once (``wait_ready`` waits for it)."""
        if self._proc is not None:
            return
        p_read, c_write = os.pipe()
        c_read, p_write = os.pipe()
        # Reward code (a user's plugin too) sees no tokens or credentials: only what Python, the
        # locale and the math libraries read.
        env = {k: v for k, v in os.environ.items() if k in CHILD_ENV or k.startswith("LC_")}
        # The child must import what the parent can (editable installs, Ray working dirs, tests).
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*sys.path, *self._init["sys_path"]]))
        code = "import sys; from vrft.verifiers.sandbox import child_main; child_main(int(sys.argv[1]), int(sys.argv[2]))"
        try:
            # Spawned from one long-lived thread: the child's PDEATHSIG fires when the thread that
            # forked it exits, so forking from a short-lived worker thread would kill it early.
            self._proc = _spawner().submit(
                subprocess.Popen,
                [sys.executable, "-c", code, str(c_read), str(c_write)],
                pass_fds=(c_read, c_write),
                stdin=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            ).result()
        finally:
            os.close(c_read)
            os.close(c_write)
        self._to_child = Connection(p_write, readable=False)
        self._from_child = Connection(p_read, writable=False)
        self._ready = False
        self._to_child.send(("init", self._init))

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        self.start()
        if self._ready:
            return
        assert self._from_child is not None
        msg: Any = None
        try:
            if self._from_child.poll(timeout_s):
                msg = self._from_child.recv()
        except (EOFError, OSError):
            msg = None
        if isinstance(msg, tuple) and msg[0] == "ready":
            self._ready = True
            return
        self.kill()
        if isinstance(msg, tuple) and msg[0] == "fatal":
            raise SandboxError(msg[1])
        raise SandboxError("scoring process did not start" + ("" if msg is None else f": {msg!r}"))

    def kill(self) -> None:
        """SIGKILL the child (if any) and reap it."""
        proc, self._proc = self._proc, None
        for conn in (self._to_child, self._from_child):
            if conn is not None:
                conn.close()
        self._to_child = self._from_child = None
        self._ready = False
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def _restart(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()  # start the replacement now so its imports overlap with our bookkeeping

    # ---- work ----------------------------------------------------------------------------------

    def score(self, items: Sequence[tuple], timeout_s: float) -> list[Outcome]:
        """Score ``items`` — ``(completion, ground_truth)`` or ``(completion, ground_truth, route)`` — in
        order; each gets at most ``timeout_s`` seconds of the child's time.

        Status is ``"ok"``, ``"budget"`` (scored, but a reward gave up on its time budget: see
        ``vrft.verifiers.budget``), ``"timeout"`` (child killed at the deadline) or ``"crash"`` (the child died
        on that item). After a kill the remaining items continue on a fresh child.
        """
        out: list[Outcome] = []
        while len(out) < len(items):
            try:
                self.wait_ready()
            except SandboxError as e:  # cannot start: the rest are errors, not an endless retry
                msg = f"scoring process failed to start: {e}"
                out.extend(("crash", None, [msg], 0.0) for _ in items[len(out):])
                break
            assert self._to_child is not None and self._from_child is not None
            rest = list(items[len(out):])
            try:
                # Each completion's slow rewards share a budget well under the kill deadline.
                self._to_child.send(("batch", rest, budget.FRACTION * timeout_s))
            except OSError:
                self._restart()  # the child died while idle: not charged to any item
                continue
            for _ in rest:
                t0 = time.monotonic()
                try:
                    got = self._from_child.poll(timeout_s)
                    msg = self._from_child.recv() if got else None
                except (EOFError, OSError):
                    out.append(("crash", None, ["scoring process died"], time.monotonic() - t0))
                    self._restart()
                    break
                if msg is None:
                    out.append(("timeout", None, [], time.monotonic() - t0))
                    self._restart()
                    break
                scores, errors, seconds, gave_up = msg
                out.append(("budget" if gave_up else "ok", scores, errors, seconds))
        return out

    def call(self, ref: str, args: tuple, timeout_s: float) -> tuple[str, Any]:
        """Run ``module:function(*args)`` in the child: ``("ok", value)``, ``("err", message)`` or
        ``("timeout", None)``; the child is replaced after a timeout or a crash."""
        for _ in range(2):  # a child that died while idle is replaced once, free of charge
            self.wait_ready()
            assert self._to_child is not None and self._from_child is not None
            try:
                self._to_child.send(("call", ref, args))
            except OSError:
                self._restart()
                continue
            try:
                if not self._from_child.poll(timeout_s):
                    self._restart()
                    return "timeout", None
                return self._from_child.recv()
            except (EOFError, OSError):
                self._restart()
                return "err", "scoring process died"
        return "err", "scoring process keeps dying"

    def __del__(self) -> None:  # best effort: never leave an orphan burning CPU
        try:
            self.kill()
        except Exception:
            pass


# ---- the child ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the kernel SIGKILLs us when the parent dies (e.g. `ray.kill` of the actor),
    # even while we are stuck in C code where no Python-level watchdog could run.
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))
        except Exception:
            pass


def resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def child_main(read_fd: int, write_fd: int) -> None:
    """Entry point of the child process."""
    _die_with_parent()
    ppid = os.getppid()
    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    try:
        kind, init = inbox.recv()
    except EOFError:
        return
    if os.getppid() != ppid:
        return
    for p in init["sys_path"]:
        if p not in sys.path:
            sys.path.append(p)
    composite = None
    try:
        # Imported here, not at module top, so the parent side of this module stays light.
        from vrft.verifiers.composite import RoutedReward
        from vrft.verifiers.registry import one_line, warmup_for

        if init["routes"]:
            composite = RoutedReward(init["routes"])
            for hook in warmup_for([s["name"] for specs in init["routes"].values() for s in specs]):
                hook()
        for ref in init["warmup"]:
            resolve(ref)()
    except Exception as e:
        outbox.send(("fatal", f"{type(e).__name__}: {e}"))
        return
    outbox.send(("ready", os.getpid()))
    while True:
        try:
            msg = inbox.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "batch":
            for item in msg[1]:
                completion, ground_truth, route = (*item, "")[:3]
                t0 = time.perf_counter()
                if composite is None:
                    scores, errors = {}, ["no rewards configured"]
                else:
                    with budget.completion_budget(msg[2] if len(msg) > 2 else None):
                        scores, errors = composite.score(completion, ground_truth, route)
                outbox.send((scores, errors, time.perf_counter() - t0, budget.take_exceeded()))
        elif msg[0] == "call":
            try:
                outbox.send(("ok", resolve(msg[1])(*msg[2])))
            except Exception as e:
                outbox.send(("err", one_line(f"{type(e).__name__}: {e}")))
        else:
            return
