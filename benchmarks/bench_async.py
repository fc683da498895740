"""BENCH async_speedup: the demo config's GRPO step time in sync mode over async mode.

Both runs use the same model, data, seed and step count (no SFT, to measure GRPO alone); the first
two steps of each are dropped as warm-up. On a 2-core CPU the rollout workers and learner ranks
share the cores, so the overlap async buys is bounded by how idle the cores are in sync mode.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.train.loop import train
from vrft.testing.synthetic import make_synthetic_data
from vrft.testing.tiny_model import make_tiny_model

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "demo_cpu.yaml"
STEPS = 8


def step_seconds(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["time/step"] for r in records if "step" in r][2:]
    return sum(times) / len(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_model(tmp / "model", size="small")
        data = make_synthetic_data(tmp / "color", task="color", n=512, seed=0)
        seconds = {}
        for mode in ("sync", "async"):
            cfg = load_config(CONFIG, [f"model.path={model}", f"data.path={data}", "sft.steps=0",
                                       f"run.steps={STEPS}", "run.save_every=0", f"run.mode={mode}",
                                       "logging.wandb=false", "logging.progress=false"])
            train(cfg, tmp / f"run-{mode}")
            seconds[mode] = step_seconds(tmp / f"run-{mode}")
    print(f"BENCH grpo_step_seconds_sync {seconds['sync']:.3f} s")
    print(f"BENCH grpo_step_seconds_async {seconds['async']:.3f} s")
    print(f"BENCH async_speedup {seconds['sync'] / seconds['async']:.3f} x")


if __name__ == "__main__":
    main()
