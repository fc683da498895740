"""Run a function under a deadline on any thread.

math-verify's own timeout is ``signal.alarm``, which raises "signal only works in main thread" off the
main thread; systems that call it from Ray or thread workers then score 0 silently, and disabling the
timeout hangs training (veRL PRs #5635 and #5839, TRL PR #5281, Math-Verify issues #50 and #55). ``call_with_timeout`` picks what works where
it runs:

- on the main thread: ``setitimer(ITIMER_REAL)`` with a handler that raises ``Deadline``, a
  ``BaseException`` so that library code catching ``Exception`` (math-verify does) cannot swallow it;
  the timer re-fires every 50 ms until the call unwinds;
- on any other thread: the call runs in a per-process helper ``Sandbox`` child that is SIGKILLed at
  the deadline (a lock serializes callers; the helper starts on first use).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from vrft.verifiers.sandbox import Sandbox


class Deadline(BaseException):
    """Raised inside the timed call when its deadline passes (main-thread mode)."""


class CallTimeout(Exception):
    """The call did not finish within its deadline."""


class RemoteError(Exception):
    """The call raised in the helper process (the message is the original exception, one line)."""


def _raise_deadline(signum: int, frame: object) -> None:
    raise Deadline()


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _call_in_main_thread(fn: Callable[..., Any], args: tuple, timeout_s: float) -> Any:
    start = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, _raise_deadline)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, timeout_s, 0.05)
    try:
        try:
            return fn(*args)
        finally:
            # A signal already pending fires inside this finally and is caught below.
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Deadline:
        raise CallTimeout(f"call exceeded {timeout_s:g} s") from None
    finally:
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # give an outer timer back what is left of it
            left = old_delay - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), old_interval)


class _Helper:
    """The per-process helper child for off-main-thread calls."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.boxes: dict[tuple[str, ...], Sandbox] = {}

    def call(self, ref: str, args: tuple, timeout_s: float, warmup: Sequence[str]) -> Any:
        with self.lock:
            box = self.boxes.get(tuple(warmup))
            if box is None:
                box = self.boxes[tuple(warmup)] = Sandbox(warmup=warmup)
            status, value = box.call(ref, args, timeout_s)
        if status == "ok":
            return value
        if status == "timeout":
            raise CallTimeout(f"{ref} exceeded {timeout_s:g} s")
        raise RemoteError(value)


_HELPER = _Helper()


def call_with_timeout(
    fn: Callable[..., Any],
    args: tuple,
    timeout_s: float,
    *,
    ref: str | None = None,
    warmup: Sequence[str] = (),
) -> Any:
    """``fn(*args)`` with a hard-ish deadline of ``timeout_s`` seconds, from any thread.

    On the main thread ``fn`` runs in-process under a SIGALRM timer; elsewhere ``ref``
    (``"module:function"`` naming ``fn``, importable in a fresh interpreter, with picklable
    arguments and result) runs in the helper child. ``warmup`` names functions the helper runs once at
    start (off the clock). Raises ``CallTimeout`` past the deadline; exceptions of ``fn`` propagate
    (off the main thread as ``RemoteError``).
    """
    if _on_main_thread() and hasattr(signal, "setitimer"):
        return _call_in_main_thread(fn, args, timeout_s)
    if ref is None:
        raise ValueError("call_with_timeout off the main thread needs ref='module:function'")
    return _HELPER.call(ref, args, timeout_s, warmup)
