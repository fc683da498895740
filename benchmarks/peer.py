"""`make bench-peer`: TRL's GRPOTrainer (in .venv-trl, benchmarks/peer_trl.py) and vrft on the same
random Qwen2-VL-architecture model (vrft/testing/tiny_model.py, size small), the same
synthetic colour prompts in the same order, the same rewards (vrft's verifiers) and settings:
4 prompts x G=8, 64 new tokens, beta 0.04, fp32, every core as torch threads (configs/local/peer_cpu.yaml,
checked against TRL's SPEC). vrft runs in the layout a local CPU run picks when its config leaves
it open (orchestrator/runtime/layout.py).
Mean step time over the steps after the first WARMUP, with each side's generate share;
the best of ROUNDS alternating runs per side.

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
from pathlib import Path

from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.train.loop import train
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


def run_trl(model: Path, data: Path, steps: int = STEPS, **settings) -> dict:
    spec = {**SPEC, **settings, "model": str(model), "data": str(data), "steps": steps}
    out = subprocess.run([str(TRL_PY), "-m", "benchmarks.peer_trl", json.dumps(spec)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("PEER ")]
    if not lines:
        raise RuntimeError(f"TRL run failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("PEER "))


def run_vrft(model: Path, data: Path, run_dir: Path, layout: list[str]) -> dict:
    cfg = load_config(CONFIG, [f"model.path={model}", f"data.path={data}", f"run.steps={STEPS}", *layout])
    ours = {"prompts": cfg.data.prompts_per_step, "n": cfg.rollout.n, "max_new_tokens": cfg.rollout.max_new_tokens,
            "beta": cfg.learner.beta, "lr": cfg.learner.lr, "seed": cfg.run.seed}
    if any(SPEC[key] != value for key, value in ours.items()):
        raise SystemExit(f"benchmarks.peer: {CONFIG.name} {ours} differs from TRL's side {SPEC}")
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
        trl = min(trls, key=lambda x: mean(x["step_s"]))
        trl_step = mean(trl["step_s"])
        print(f"BENCH trl_step_s {trl_step:.3f} s (generate+score {mean(trl['generate_s']):.3f} s, "
              f"mean length {mean(trl['length']):.1f}; best of {ROUNDS})")
        for name in layouts:
            vrft = min(vrfts[name], key=lambda x: mean(x["step_s"]))
            step = mean(vrft["step_s"])
            suffix = "" if name == "auto" else f"_{name}"
            print(f"BENCH vrft{suffix}_step_s {step:.3f} s (generate+score {mean(vrft['generate_s']):.3f} s, "
                  f"learn {mean(vrft['learn_s']):.3f} s, sync {mean(vrft['sync_s']):.3f} s, "
                  f"mean length {mean(vrft['length']):.1f})")
            print(f"BENCH vrft{suffix}_over_trl_step {step / trl_step:.3f} x")


if __name__ == "__main__":
    main(sys.argv[1:])
