"""`make demo-tools`: the image tools' CPU demo (docs/tools.md), with tools and then the same budget
without, ending in one line:

    DEMO-TOOLS tool_call_rate=… accuracy_first20=… accuracy_last20=… notool_accuracy_last20=… minutes=…

`tool_call_rate` and the accuracies are means over the first / last 20% of the GRPO steps (at least
one step) of `rollout/tool_call_rate` and `reward/accuracy`, read from each run's metrics.jsonl.

First the model learns to see: one-turn SFT on the zoomed quarters alone (`--see-data`, the task
`glyph-crops`), which a pretrained model would not need; both runs start from that model, and
`minutes` counts it.

    python -m benchmarks.demo_tools [--config configs/local/demo_tools_cpu.yaml] [--seed 0] [overrides…]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def steps_of(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "step" in r and not r.get("summary")]


def share_mean(steps: list[dict], key: str, last: bool) -> float:
    k = max(1, len(steps) // 5)
    part = steps[-k:] if last else steps[:k]
    values = [r[key] for r in part if key in r]
    return sum(values) / len(values) if values else float("nan")


def run(config: str, run_dir: Path, overrides: list[str], command: str = "train") -> Path:
    cmd = [sys.executable, "-m", "vrft", command, config, *overrides, "--run-dir", str(run_dir)]
    subprocess.run(cmd, check=True)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/local/demo_tools_cpu.yaml", help="the run config")
    p.add_argument("--seed", type=int, default=0, help="run.seed of both runs")
    p.add_argument("--out", default=None, help="folder of the runs (default runs/demo-tools-TIME)")
    p.add_argument("--see-data", default="runs/assets/glyph-crops", help="the first stage's rows (glyph-crops)")
    p.add_argument("--see-steps", type=int, default=60, help="SFT steps of the first stage (0: none)")
    p.add_argument("overrides", nargs="*", help="section.key=value for both runs")
    args = p.parse_args(argv)
    out = Path(args.out or f"runs/demo-tools-{time.strftime('%Y%m%d-%H%M%S')}")
    common = [f"run.seed={args.seed}", *args.overrides]
    start = time.perf_counter()
    if args.see_steps > 0:
        seeing = run(args.config, out / "see", [*common, f"data.path={args.see_data}", "rollout.tools=null",
                                                f"sft.steps={args.see_steps}"], command="sft")
        common.append(f"model.path={seeing / 'sft_model'}")
    tools = steps_of(run(args.config, out / "tools", common))
    without = steps_of(run(args.config, out / "notools", [*common, "rollout.tools=null"]))
    minutes = (time.perf_counter() - start) / 60
    print(f"DEMO-TOOLS tool_call_rate={share_mean(tools, 'rollout/tool_call_rate', True):.4f} "
          f"accuracy_first20={share_mean(tools, 'reward/accuracy', False):.4f} "
          f"accuracy_last20={share_mean(tools, 'reward/accuracy', True):.4f} "
          f"notool_accuracy_last20={share_mean(without, 'reward/accuracy', True):.4f} minutes={minutes:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
