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
    import learner.group
    import orchestrator.loop as loop
    from orchestrator.cli import main as vrft

    marks.append(("imports", time.time()))
    for name in ("start_ray", "place", "start_rollout", "start_pool", "connect_weight_sync"):
        setattr(loop, name, timed(name, getattr(loop, name)))
    # LearnerGroup's start waits twice: for rank 0's address (actors up), then for every rank's
    # setup (model load, DeepSpeed init, gloo group).
    group_get, waits = learner.group.LearnerGroup._get, iter(("learner_actors", "learner_deepspeed_init"))

    def get(self, refs, timeout_s=None, late="did not answer"):
        out = group_get(self, refs, timeout_s, late)
        if late == "did not start":
            marks.append((next(waits, "learner_other"), time.time()))
        return out

    learner.group.LearnerGroup._get = get

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
