"""Child of bench_startup.py: `vrft train CONFIG ...` in this process, with every start-up phase
timed, stopped at the first step's rollout launch. Prints one JSON line of phase -> seconds.

    python -m benchmarks.startup_child LAUNCHED_AT CONFIG [overrides...] --run-dir DIR

LAUNCHED_AT: the parent's time.time() just before it started this process, so the interpreter's
own start and the imports count, as they do for a user typing `vrft train`.
"""

from __future__ import annotations

import time

marks: list[tuple[str, float]] = []  # (phase that just ended, time.time())


class FirstLaunch(Exception):
    """Raised at the first rollout launch: start-up is over (train()'s finally shuts down)."""


def timed(name: str, fn):
    def wrapper(*args, **kwargs):
        marks.append((f"before_{name}", time.time()))
        out = fn(*args, **kwargs)
        marks.append((name, time.time()))
        return out
    return wrapper


def main(argv: list[str]) -> None:
    import json

    launched_at, rest = float(argv[0]), argv[1:]
    import orchestrator.loop as loop
    from orchestrator.cli import main as vrft

    marks.append(("imports", time.time()))
    # start_actors starts the rollout workers, the verifier pool and the learner ranks (model load,
    # DeepSpeed init, gloo group) at once: one phase, as long as the slowest kind.
    for name in ("start_ray", "place", "start_actors", "connect_weight_sync"):
        setattr(loop, name, timed(name, getattr(loop, name)))

    def first_launch(*args, **kwargs):
        marks.append(("first_launch", time.time()))
        raise FirstLaunch

    loop.launch_rollout = first_launch
    try:
        vrft(["train", *rest])
    except FirstLaunch:
        pass
    phases, last = {}, launched_at
    for name, at in marks:  # a `before_X` mark ends the driver's own work since the last phase
        key = name.replace("before_", "driver_before_") if name.startswith("before_") else name
        phases[key] = round(at - last, 3)
        last = at
    total = next(at for name, at in marks if name == "first_launch") - launched_at
    print("STARTUP " + json.dumps({"total": round(total, 3), **phases}), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
