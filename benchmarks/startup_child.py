"""Child of bench_startup.py: `vrft train CONFIG ...` in this process, with every start-up phase
timed, stopped at the first step's rollout launch. Prints one JSON line of phase -> seconds.

    python -m benchmarks.startup_child LAUNCHED_AT CONFIG [overrides...] --run-dir DIR

LAUNCHED_AT: the parent's time.time() just before it started this process, so the interpreter's
own start and the imports count, as they do for a user typing `vrft train`.

At the first launch it also adds up the CPU seconds every process of the run has used so far: this
one and its descendants (Ray's GCS, raylet, agents and dashboard, and every actor's worker
process), grouped by kind. On a machine with few cores that sum, not the order of the phases,
bounds the wall time: start-up cannot take less than cpu_s / cores.
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
    import ray

    import vrft.orchestrator.runtime.cluster as cluster
    from vrft.orchestrator.cli.main import main as vrft

    marks.append(("imports", time.time()))  # the CLI's own: the training loop comes later
    cpu: dict[str, float] = {}

    def first_launch(*args, **kwargs):
        marks.append(("first_launch", time.time()))
        cpu.update(cpu_by_kind())
        raise FirstLaunch

    start_ray = cluster.start_ray

    def timed_start_ray(cfg):  # `vrft train` starts Ray while another thread imports the loop
        return timed("start_ray", start_ray)(cfg) if not ray.is_initialized() else start_ray(cfg)

    overlapped = cluster.start_ray_while_importing

    def then_patch_loop(cfg, module):
        started = overlapped(cfg, module)
        marks.append(("import_join", time.time()))  # the import's part left once Ray was up
        import vrft.orchestrator.train.loop as loop

        # start_actors starts the rollout workers, the verifier pool and the learner ranks (model
        # load, DeepSpeed init, gloo group) at once: one phase, as long as the slowest kind.
        for name in ("place", "start_actors", "connect_weight_sync"):
            setattr(loop, name, timed(name, getattr(loop, name)))
        loop.launch_rollout = first_launch
        return started

    cluster.start_ray = timed_start_ray
    cluster.start_ray_while_importing = then_patch_loop
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
    print("STARTUP " + json.dumps({"total": round(total, 3), **phases, "cpu": cpu}), flush=True)


def cpu_by_kind() -> dict[str, float]:
    """CPU seconds (user + system) of this process and every live descendant, by kind: `driver`,
    an actor's class (`ray::LearnerRank`), `ray` for Ray's own processes; `total` of them all."""
    import psutil

    me = psutil.Process()
    out: dict[str, float] = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            times, title = proc.cpu_times(), " ".join(proc.cmdline()) or proc.name()
        except psutil.Error:  # exited since the listing
            continue
        kind = ("driver" if proc.pid == me.pid else title.split()[0] if title.startswith("ray::") else "ray")
        out[kind] = out.get(kind, 0.0) + times.user + times.system
    out = {kind: round(seconds, 2) for kind, seconds in sorted(out.items())}
    return {**out, "total": round(sum(out.values()), 2)}


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
