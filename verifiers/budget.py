"""A time budget per completion for slow reward code (math-verify), and a count of the rewards that
gave up on it.

The pool kills a scoring process that overruns the verifier timeout, zeroing every component of
that completion and paying a process restart. A reward whose own work can blow up (sympy deciding
``9^9^9``) instead gives up well before that: the scoring process opens a budget for each
completion (a fraction of the verifier timeout) and such a reward asks ``left()`` how much of it
remains, scores 0 when it runs out or refuses the input up front, and says so with
``note_exceeded()``. The scoring process reads ``take_exceeded()`` after each completion and the
pool counts it in ``verifier/timeouts``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

FRACTION = 0.4  # of the verifier timeout: a completion's slow rewards together get this much

_local = threading.local()
_lock = threading.Lock()
_exceeded = 0


@contextmanager
def completion_budget(seconds: float | None) -> Iterator[None]:
    """Budget the rewards run inside (this thread) to `seconds` in all (None: no budget)."""
    before = getattr(_local, "deadline", None)
    _local.deadline = None if seconds is None else time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = before


def left(default: float) -> float:
    """Seconds a reward may still spend: `default`, or less if the completion's budget is lower."""
    deadline = getattr(_local, "deadline", None)
    return default if deadline is None else min(default, deadline - time.monotonic())


def note_exceeded() -> None:
    """A reward gave up: its budget ran out, or its input was refused as too costly to decide."""
    global _exceeded
    with _lock:
        _exceeded += 1


def take_exceeded() -> int:
    """How many times rewards gave up since the last call (and reset)."""
    global _exceeded
    with _lock:
        n, _exceeded = _exceeded, 0
    return n
