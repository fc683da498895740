"""What stops a run, and how it is said: one line naming the actor and the reason.

Recoverable faults (a rollout worker or a verifier actor lost) are handled where they happen
(rollout_pool.py, verifiers.VerifierPool). Everything else ends the run through `RunStopped`:
`train` unwinds (every actor killed, Ray stopped, the latest complete checkpoint untouched) and
`vrft` prints the message as its one error line and exits non-zero (docs/reliability.md).
Ray is imported only when an error is worded: `vrft` imports this module before it starts.
"""

from __future__ import annotations

import re
import time


class RunStopped(RuntimeError):
    """An unrecoverable fault; the message is the one line the user sees (actor: reason)."""

    resumable = True  # False: a resume would stop the same way (the config must change first)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def reason(err: BaseException) -> str:
    """A short account of a Ray (or timeout) error: why an actor is gone or what it raised."""
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

    if isinstance(err, RayActorError):
        text = str(err)
        if getattr(err, "_actor_init_failed", False):  # the constructor raised: name that exception
            raised = [line.strip() for line in text.splitlines() if re.match(r"^\s*\w+(Error|Exception)\b", line)]
            return "failed to start: " + (raised[-1] if raised else _first_line(text))
        because = re.search(r"The actor is dead because (.*?)\.(\s|$)", text)
        exit_type = re.search(r"Worker exit type: (\w+)", text)
        why = because.group(1) if because else _first_line(text)
        if exit_type and exit_type.group(1) in ("SYSTEM_ERROR", "NODE_DIED"):
            why += f" ({exit_type.group(1)}: killed, crashed, out of memory or its node lost)"
        return why
    if isinstance(err, RayTaskError):
        cause = err.cause if getattr(err, "cause", None) is not None else err
        if cause is not err:
            return f"{type(cause).__name__}: {_first_line(str(cause))}"
        return _first_line(str(err).split("\n", 1)[-1]) or type(err).__name__
    if isinstance(err, (GetTimeoutError, TimeoutError)):
        return _first_line(str(err)) or "timed out"
    text = _first_line(str(err))
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def describe(err: BaseException) -> str:
    """The one line for an error that ends a run: which actor, and why."""
    from ray.exceptions import RayError

    from vrft.learner.group import RankFailed

    if isinstance(err, RunStopped):
        return str(err)
    if isinstance(err, RankFailed):
        who = f"learner rank {err.rank}" + (f" (pid {err.pid})" if err.pid else "")
        return f"{who}: {reason(err.error)}"
    if isinstance(err, RayError):  # a Ray error no one named: Ray's own text says which actor
        text = str(err)
        cls = re.search(r"class_name: (\w+)", text)
        pid = re.search(r"pid: (\d+)", text)
        if not cls:
            return reason(err)
        who = f"{cls.group(1)} (pid {pid.group(1)})" if pid else cls.group(1)
        return f"{who}: {reason(err)}"
    return f"{type(err).__name__}: {_first_line(str(err))}"


def wait_started(refs: list, names: list[str], timeout_s: float) -> list:
    """The results of actors' first calls (their constructors ran), in order; the first actor that
    fails, or has not answered within `timeout_s`, ends the run, named."""
    import ray
    from ray.exceptions import RayError

    index = {ref: i for i, ref in enumerate(refs)}
    pending, deadline = list(refs), time.monotonic() + timeout_s
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            late = names[index[pending[0]]]
            raise RunStopped(f"{late}: did not start within {timeout_s:g} s (run.start_timeout_s): "
                             "still loading, waiting for resources, or hung")
        try:
            ray.get(done[0])
        except RayError as err:
            raise RunStopped(f"{names[index[done[0]]]}: {reason(err)}") from None
    return ray.get(list(refs))
