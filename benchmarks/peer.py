"""`make bench-peer`: TRL's GRPOTrainer (in .venv-trl, benchmarks/peer_trl.py) and vrft on the same
random Qwen2-VL-architecture model (vrft/testing/tiny_model.py, size small), the same
synthetic colour prompts in the same order, the same rewards (vrft's verifiers) and settings:
4 prompts x G=8, 64 new tokens, beta 0.04, fp32, every core as torch threads (configs/local/peer_cpu.yaml,
checked against TRL's SPEC). vrft runs in the layout a local CPU run picks when its config leaves
it open (orchestrator/runtime/layout.py).
Both sides run in their own process and are timed the same way, from outside: the mean whole
step (the wall time between two consecutive per-step records landing in the run's log file,
stamped by this process; `TIMING` lines say what that holds) over the steps after the first
WARMUP, the best of ROUNDS alternating runs per side. Beside it, each side's own inside figures
(its step as it times it, its generate share), which do not cover the same phases.

    python -m benchmarks.peer [demo] [plain_prefill]   # also vrft in the demo's layout (2 workers +
                                                       # 2 ZeRO-2 ranks) / with rollout.share_prefill off
    python -m benchmarks.peer learn    # both learning from one warm-started checkpoint (peer_learn.py)

Not in `make bench` (it needs .venv-trl); on a shared machine read the ratios, not the seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

from vrft.orchestrator.config.schema import load_config
from vrft.testing.synthetic import make_synthetic_data
from vrft.testing.tiny_model import make_tiny_model

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "configs" / "local" / "peer_cpu.yaml"
TRL_PY = ROOT / ".venv-trl" / "bin" / "python"
STEPS, WARMUP = int(os.environ.get("VRFT_PEER_STEPS", "6")), 2
ROUNDS = int(os.environ.get("VRFT_PEER_ROUNDS", "2"))
# TRL gets every core as its torch threads; so does each vrft phase under the auto layout.
SPEC = {"prompts": 4, "n": 8, "max_new_tokens": 64, "beta": 0.04, "lr": 1e-5, "seed": 0,
        "threads": os.cpu_count() or 1, "rewards": ["classification", "format"]}
LAYOUTS = {
    # The config leaves the layout open: the single-node CPU layout (orchestrator/runtime/layout.py).
    "auto": [],
    # The demo's distributed layout: 2 workers + a 2-rank ZeRO-2 learner, 1 thread each.
    "demo": ["rollout.num_workers=2", "rollout.torch_threads=1", "learner.world_size=2",
             "learner.torch_threads=1", "learner.zero_stage=2", "verifier.num_actors=2"],
    # The engine prefilling every row, as before rollout.share_prefill (its before/after).
    "plain_prefill": ["rollout.share_prefill=false"],
}


def mean(xs: list[float]) -> float:
    xs = xs[WARMUP:] or xs
    return sum(xs) / len(xs)


# Both sides' headline step time is taken the same way, from outside each process: this process
# starts the run, watches the file the run appends one record to per step, and stamps each record
# as it lands. A step is the wall time between two consecutive records, so it holds everything the
# run's loop does per step, whatever the side counts as "its step" inside (printed beside it).
POLL_S = 0.02
TIMING = {
    "trl": "TIMING trl: whole step = wall time between consecutive per-step records (TRL's on_log) "
           "landing in its log file, stamped by benchmarks.peer polling every 20 ms: data loading, "
           "prompt building, generate+score, learn, logging",
    "vrft": "TIMING vrft: whole step = wall time between consecutive per-step records landing in "
            "metrics.jsonl, stamped by benchmarks.peer polling every 20 ms: prompt drawing and "
            "building, rollout, scoring, learn, weight sync, rollout records and alarms, logging",
}


def watch_steps(side: str, cmd: list[str], log: Path, timeout: float) -> tuple[list[float], str]:
    """Run `cmd` (its output to files, never a pipe that could fill) and stamp every complete
    per-step record (a JSON line with `step` >= 1, not the summary) appended to `log` while it runs.
    Returns the stamps (perf_counter seconds, one per record) and the process's stdout."""
    stamps: list[float] = []
    seen = 0  # bytes of `log` already read up to the last complete line
    with tempfile.TemporaryFile("w+") as output, tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=output, stderr=errors, text=True)
        deadline = time.perf_counter() + timeout
        while True:
            done = proc.poll() is not None
            if log.is_file():
                with log.open("rb") as f:
                    f.seek(seen)
                    chunk = f.read()
                now = time.perf_counter()
                complete = chunk[:chunk.rfind(b"\n") + 1]  # a half-written line waits for its end
                seen += len(complete)
                for line in complete.decode().splitlines():
                    record = json.loads(line)
                    if record.get("step", 0) >= 1 and not record.get("summary"):  # not a step-0 eval
                        stamps.append(now)
            if done:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                proc.wait()
                break
            time.sleep(POLL_S)
        output.seek(0)
        errors.seek(0)
        text, error_text = output.read(), errors.read()
    if proc.returncode:
        raise RuntimeError(f"{side} run failed ({proc.returncode}):\n{error_text[-4000:]}")
    return stamps, text


def whole_steps(stamps: list[float]) -> list[float]:
    """Each step's wall time from consecutive record stamps: steps 2..N (step 1 has no record
    before it, and its time would hold the start-up)."""
    return [b - a for a, b in pairwise(stamps)]


def mean_whole(steps: list[float]) -> float:
    """The mean whole step over the same steps `mean` averages (after WARMUP): `steps` starts at
    step 2, so WARMUP - 1 of them are warm-up."""
    xs = steps[WARMUP - 1:] or steps
    return sum(xs) / len(xs)


def run_trl(model: Path, data: Path, steps: int = STEPS, **settings) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "steps.jsonl"
        spec = {**SPEC, **settings, "model": str(model), "data": str(data), "steps": steps, "log": str(log)}
        stamps, out = watch_steps("TRL", [str(TRL_PY), "-m", "benchmarks.peer_trl", json.dumps(spec)], log, 1800)
    lines = [ln for ln in out.splitlines() if ln.startswith("PEER ")]
    if not lines:
        raise RuntimeError(f"TRL run printed no PEER line:\n{out[-4000:]}")
    return {**json.loads(lines[-1].removeprefix("PEER ")), "whole_s": whole_steps(stamps)}


def run_vrft(model: Path, data: Path, run_dir: Path, layout: list[str]) -> dict:
    overrides = [f"model.path={model}", f"data.path={data}", f"run.steps={STEPS}", *layout]
    cfg = load_config(CONFIG, overrides)
    ours = {"prompts": cfg.data.prompts_per_step, "n": cfg.rollout.n, "max_new_tokens": cfg.rollout.max_new_tokens,
            "beta": cfg.learner.beta, "lr": cfg.learner.lr, "seed": cfg.run.seed}
    if any(SPEC[key] != value for key, value in ours.items()):
        raise SystemExit(f"benchmarks.peer: {CONFIG.name} {ours} differs from TRL's side {SPEC}")
    # `vrft train` in its own process, as TRL's side runs in its own.
    cmd = [sys.executable, "-m", "vrft.orchestrator.cli.main", "train", str(CONFIG), *overrides,
           "--run-dir", str(run_dir)]
    stamps, _ = watch_steps("vrft", cmd, run_dir / "metrics.jsonl", 1800)
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "step" in r and "time/step" in r]
    return {"whole_s": whole_steps(stamps),
            "step_s": [r["time/step"] for r in steps],
            "generate_s": [r["time/rollout"] + r["time/verify"] for r in steps],
            "learn_s": [r["time/learn"] for r in steps],
            "sync_s": [r.get("time/sync", 0.0) for r in steps],
            "length": [r["response/length_mean"] for r in steps]}


def main(argv: list[str] | None = None) -> None:
    argv = argv or []
    if not TRL_PY.exists():
        raise SystemExit("benchmarks.peer: no .venv-trl (make install-trl)")
    if "learn" in argv:  # the learning run from one warm-started checkpoint (benchmarks/peer_learn.py)
        from benchmarks import peer_learn

        with tempfile.TemporaryDirectory() as tmp:
            peer_learn.main(Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_model(tmp / "model", size="small")
        data = make_synthetic_data(tmp / "color", task="color", n=SPEC["prompts"] * (STEPS + 1), seed=0)
        # Alternate the sides ROUNDS times and keep each side's fastest run: on a shared machine
        # the least disturbed run is the closest to what a step costs, and alternating spreads a
        # burst of other load over both sides.
        layouts = ["auto", *(name for name in LAYOUTS if name != "auto" and name in argv)]
        trls, vrfts = [], {name: [] for name in layouts}
        for r in range(ROUNDS):
            trls.append(run_trl(model, data))
            for name in layouts:
                vrfts[name].append(run_vrft(model, data, tmp / f"vrft-{name}-{r}", LAYOUTS[name]))
        trl = min(trls, key=lambda x: mean_whole(x["whole_s"]))
        trl_step = mean_whole(trl["whole_s"])
        print(TIMING["trl"])
        print(TIMING["vrft"])
        print(f"BENCH trl_whole_step_s {trl_step:.3f} s (inside TRL's step: {mean(trl['step_s']):.3f} s, "
              f"generate+score {mean(trl['generate_s']):.3f} s; mean length {mean(trl['length']):.1f}; "
              f"best of {ROUNDS})")
        for name in layouts:
            vrft = min(vrfts[name], key=lambda x: mean_whole(x["whole_s"]))
            step = mean_whole(vrft["whole_s"])
            suffix = "" if name == "auto" else f"_{name}"
            print(f"BENCH vrft{suffix}_whole_step_s {step:.3f} s (inside vrft's step: {mean(vrft['step_s']):.3f} s, "
                  f"generate+score {mean(vrft['generate_s']):.3f} s, learn {mean(vrft['learn_s']):.3f} s, "
                  f"sync {mean(vrft['sync_s']):.3f} s; mean length {mean(vrft['length']):.1f})")
            print(f"BENCH vrft{suffix}_over_trl_whole_step {step / trl_step:.3f} x")

if __name__ == "__main__":
    main(sys.argv[1:])
