"""`make bench-peer PEER=learn`: TRL and vrft learning from the same warm-started checkpoint.

A short chain-of-thought SFT (vrft's, as in the demo) turns the random small Qwen2-VL into a policy
that answers the colour task partly right; from that one folder each side runs STEPS GRPO steps at
the same settings (peer.SPEC, ≤ 40 new tokens, lr 5e-5), each in a fresh process timed as a whole
(interpreter, imports, start-up and every step). Reports each side's mean reward over its first
and last 20% of steps, the gain, and the wall time:

    BENCH trl_learn_reward_first20 / _last20 / _gain, trl_learn_wall_s   (and the same for vrft)
    BENCH vrft_over_trl_learn_wall

    VRFT_PEER_LEARN_STEPS=60 python -m benchmarks.peer learn
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.peer import CONFIG, ROOT, SPEC, run_trl
from vrft.testing.synthetic import make_synthetic_data
from vrft.testing.tiny_model import make_tiny_model

STEPS = int(os.environ.get("VRFT_PEER_LEARN_STEPS", "60"))
SETTINGS = {"max_new_tokens": 40, "lr": 5e-5}
SFT = ["sft.steps=40", "sft.prompts_per_step=16", "sft.lr=1e-3", "sft.lr_schedule=constant", "sft.weight_decay=0"]


def vrft(args: list[str]) -> float:
    """`vrft train ...` in a fresh process; its wall time."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "vrft.orchestrator.cli.main", "train", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=3600)
    if out.returncode:
        raise RuntimeError(f"vrft train failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return time.perf_counter() - start


def first_last(rewards: list[float]) -> tuple[float, float]:
    k = max(1, round(0.2 * len(rewards)))
    return sum(rewards[:k]) / k, sum(rewards[-k:]) / k


def report(side: str, rewards: list[float], wall: float) -> None:
    first, last = first_last(rewards)
    print(f"BENCH {side}_learn_reward_first20 {first:.3f} reward")
    print(f"BENCH {side}_learn_reward_last20 {last:.3f} reward")
    print(f"BENCH {side}_learn_reward_gain {last - first:.3f} reward")
    print(f"BENCH {side}_learn_wall_s {wall:.1f} s ({len(rewards)} steps)")


def main(tmp: Path) -> None:
    model = make_tiny_model(tmp / "model", size="small")
    data = make_synthetic_data(tmp / "color", task="color", n=max(640, SPEC["prompts"] * (STEPS + 1)), seed=0)
    common = [f"data.path={data}", f"rollout.max_new_tokens={SETTINGS['max_new_tokens']}",
              f"learner.lr={SETTINGS['lr']}"]
    vrft([str(CONFIG), f"model.path={model}", *common, "run.steps=0", *SFT, "--run-dir", str(tmp / "sft")])
    warm = tmp / "sft" / "sft_model"  # the one checkpoint both sides start from

    start = time.perf_counter()
    trl = run_trl(warm, data, steps=STEPS, **SETTINGS)
    trl_wall = time.perf_counter() - start
    run = tmp / "vrft"
    vrft_wall = vrft([str(CONFIG), f"model.path={warm}", *common, f"run.steps={STEPS}", "--run-dir", str(run)])
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    vrft_rewards = [r["reward/mean"] for r in records if "time/step" in r]
    report("trl", trl["reward"], trl_wall)
    report("vrft", vrft_rewards, vrft_wall)
    print(f"BENCH vrft_over_trl_learn_wall {vrft_wall / trl_wall:.3f} x")
