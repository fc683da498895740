"""`make bench-peer`: TRL's GRPOTrainer (in .venv-trl, benchmarks/peer_trl.py) and vrft on the same
random Qwen2-VL-architecture model (orchestrator/assets/tiny_model.py, size small), the same
synthetic colour prompts in the same order, the same rewards (vrft's verifiers) and settings:
PROMPTS prompts x G=N, MAX_NEW_TOKENS new tokens, beta 0.04, fp32, the same thread count.
Mean step time over the steps after the first WARMUP, with each side's generate share;
the best of ROUNDS alternating runs per side.

    python -m benchmarks.peer [demo]   # demo: also vrft in the demo's layout (2 workers + 2 ranks)

Not in `make bench` (it needs .venv-trl); on a shared machine read the ratios, not the seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from orchestrator.assets.synthetic import make_synthetic_data
from orchestrator.assets.tiny_model import make_tiny_model
from orchestrator.config import load_config
from orchestrator.loop import train

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "configs" / "local" / "demo_cpu.yaml"
TRL_PY = ROOT / ".venv-trl" / "bin" / "python"
STEPS, WARMUP = int(os.environ.get("VRFT_PEER_STEPS", "6")), 2
ROUNDS = int(os.environ.get("VRFT_PEER_ROUNDS", "2"))
SPEC = {"prompts": 4, "n": 8, "max_new_tokens": 64, "beta": 0.04, "lr": 1e-5, "seed": 0, "threads": 2,
        "rewards": ["classification", "format"]}
LAYOUTS = {
    # One rollout worker and one learner rank with 2 threads each: the same 2 cores TRL uses.
    "1x1": ["rollout.num_workers=1", "rollout.torch_threads=2", "learner.world_size=1",
            "learner.torch_threads=2", "verifier.num_actors=1"],
    "demo": ["rollout.num_workers=2", "rollout.torch_threads=1", "learner.world_size=2",
             "learner.torch_threads=1", "verifier.num_actors=2"],
}


def mean(xs: list[float]) -> float:
    xs = xs[WARMUP:] or xs
    return sum(xs) / len(xs)


def run_trl(model: Path, data: Path) -> dict:
    spec = {**SPEC, "model": str(model), "data": str(data), "steps": STEPS}
    out = subprocess.run([str(TRL_PY), "-m", "benchmarks.peer_trl", json.dumps(spec)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("PEER ")]
    if not lines:
        raise RuntimeError(f"TRL run failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("PEER "))


def run_vrft(model: Path, data: Path, run_dir: Path, layout: list[str]) -> dict:
    cfg = load_config(CONFIG, [
        f"model.path={model}", f"data.path={data}", "sft.steps=0", f"run.steps={STEPS}", "run.save_every=0",
        f"run.seed={SPEC['seed']}", f"data.prompts_per_step={SPEC['prompts']}", f"rollout.n={SPEC['n']}",
        f"rollout.max_new_tokens={SPEC['max_new_tokens']}", f"rollout.prompts_per_call={SPEC['prompts']}",
        f"learner.beta={SPEC['beta']}", f"learner.lr={SPEC['lr']}", "learner.micro_batch_size=32",
        "logging.wandb=false", "logging.progress=false", *layout])
    train(cfg, run_dir)
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "step" in r and "time/step" in r]
    return {"step_s": [r["time/step"] for r in steps],
            "generate_s": [r["time/rollout"] + r["time/verify"] for r in steps],
            "learn_s": [r["time/learn"] for r in steps],
            "sync_s": [r.get("time/sync", 0.0) for r in steps],
            "length": [r["response/length_mean"] for r in steps]}


def main(argv: list[str] | None = None) -> None:
    argv = argv or []
    if not TRL_PY.exists():
        raise SystemExit("benchmarks.peer: no .venv-trl (make install-trl)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_model(tmp / "model", size="small")
        data = make_synthetic_data(tmp / "color", task="color", n=SPEC["prompts"] * (STEPS + 1), seed=0)
        # Alternate the sides ROUNDS times and keep each side's fastest run: on a shared machine
        # the least disturbed run is the closest to what a step costs, and alternating spreads a
        # burst of other load over both sides.
        layouts = ["1x1", *(["demo"] if "demo" in argv else [])]
        trls, vrfts = [], {name: [] for name in layouts}
        for r in range(ROUNDS):
            trls.append(run_trl(model, data))
            for name in layouts:
                vrfts[name].append(run_vrft(model, data, tmp / f"vrft-{name}-{r}", LAYOUTS[name]))
        trl = min(trls, key=lambda x: mean(x["step_s"]))
        trl_step = mean(trl["step_s"])
        print(f"BENCH trl_step_s {trl_step:.3f} s (generate+score {mean(trl['generate_s']):.3f} s, "
              f"mean length {mean(trl['length']):.1f}; best of {ROUNDS})")
        for name in layouts:
            vrft = min(vrfts[name], key=lambda x: mean(x["step_s"]))
            step = mean(vrft["step_s"])
            suffix = "" if name == "1x1" else f"_{name}"
            print(f"BENCH vrft{suffix}_step_s {step:.3f} s (generate+score {mean(vrft['generate_s']):.3f} s, "
                  f"learn {mean(vrft['learn_s']):.3f} s, sync {mean(vrft['sync_s']):.3f} s, "
                  f"mean length {mean(vrft['length']):.1f})")
            print(f"BENCH vrft{suffix}_over_trl_step {step / trl_step:.3f} x")


if __name__ == "__main__":
    main(sys.argv[1:])
