"""BENCH startup_s: from `vrft train configs/local/test_cpu.yaml` (tiny model) being started to the
first step's rollout launch, in a fresh process (interpreter start and imports count), with its
phases: imports, Ray init, placement, the actors (rollout engines, verifier pool and learner ranks
with their model load + DeepSpeed init + gloo group, started at once), weight-sync group. Best of RUNS: the machine is
shared, and the least disturbed run is the closest to what start-up costs. With it, `startup_cpu_s`:
the CPU seconds every process of that run used (benchmarks/startup_child.py), and
`startup_cpu_floor_s` = that over the cores, the least the wall time could be (derived, so printed
as a `SIM` line).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vrft.testing.synthetic import make_synthetic_data
from vrft.testing.tiny_model import make_tiny_model

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "configs" / "local" / "test_cpu.yaml"
RUNS = int(os.environ.get("VRFT_BENCH_STARTUP_RUNS", "2"))
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
LAYOUTS = {  # the test config as shipped, and one rollout worker + one learner rank
    "": [],
    "_1x1": ["rollout.num_workers=1", "learner.world_size=1", "verifier.num_actors=1"],
}


def startup(model: Path, data: Path, run_dir: Path, overrides: list[str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.startup_child", "", str(CONFIG), f"model.path={model}",
           f"data.path={data}", "logging.wandb=false", *overrides, "--run-dir", str(run_dir)]
    cmd[3] = repr(time.time())
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("STARTUP ")]
    if not lines:
        raise RuntimeError(f"startup child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("STARTUP "))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_model(tmp / "model", size="tiny")
        data = make_synthetic_data(tmp / "color", task="color", n=16, seed=0)
        for suffix, overrides in LAYOUTS.items():
            runs = [startup(model, data, tmp / f"run{suffix}-{i}", overrides) for i in range(RUNS)]
            best = min(runs, key=lambda r: r["total"])
            print(f"BENCH startup_s{suffix} {best['total']:.2f} s")
            phases = {k: v for k, v in best.items() if k not in ("total", "cpu")}
            print(f"# startup{suffix} phases (s): {json.dumps(phases)}", file=sys.stderr)
            for key in ("start_ray", "start_actors"):
                print(f"BENCH startup{suffix}_{key}_s {best.get(key, float('nan')):.2f} s")
            # What every process of the run spent on the CPU: over the cores, the least the wall
            # time could be if nothing ever waited (docs/measurements.md).
            cpu = best["cpu"]
            print(f"BENCH startup{suffix}_cpu_s {cpu['total']:.2f} s")
            # Derived, not measured: a `SIM` line.
            print(f"SIM startup{suffix}_cpu_floor_s {cpu['total'] / CORES:.2f} s")
            print(f"# startup{suffix} CPU seconds by process kind ({CORES} cores): {json.dumps(cpu)}",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
