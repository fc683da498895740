"""`vrft report RUN_DIR`, and the summary table `vrft train` prints when a run ends."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("vrft")

EPILOG = """examples:
  vrft report runs/demo-20261121-101500                  writes runs/demo-…/report.html
  vrft report runs/demo-20261121-101500 --out /tmp/r.html --max-rollouts 500
  vrft report runs/rft-seed0 runs/rft-seed1 runs/sft-seed0        writes runs/compare-rft-seed0-….html
"""
LAST = 5  # steps the final reward is averaged over: one step's mean over a few prompts is noisy


def run_summary(run_dir: Path, report: Path | None = None) -> str:
    """A few lines: steps, the best value of each eval metric, the final reward per task, and where
    the report and the records are."""
    from vrft.orchestrator.observe.report import series, tasks_of
    from vrft.orchestrator.observe.rollout_log import read_history, rollouts_dir

    run_dir = Path(run_dir)
    history = read_history(run_dir)
    metrics = series(history)
    steps = [r for r in history if "reward/mean" in r]
    lines = [f"run summary: {run_dir}"]
    last = steps[-1] if steps else {}
    version = f", policy version {last['policy_version']:.0f}" if "policy_version" in last else ""
    lines.append(f"  {'steps':<10} {steps[-1]['step'] if steps else 0}{version}")
    evals = sorted(k for k in metrics if k.startswith("eval/") and k.count("/") >= 2
                   and not k.endswith(("_ci_low", "_ci_high")))  # an interval goes beside its metric
    for i, key in enumerate(evals[:4]):
        step, value = max(metrics[key].items(), key=lambda kv: kv[1])
        low, high = (metrics.get(key + end, {}).get(step) for end in ("_ci_low", "_ci_high"))
        interval = f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
        lines.append(f"  {'best eval' if i == 0 else '':<10} {key} {value:.4f}{interval} (step {step})")
    if len(evals) > 4:
        lines.append(f"  {'':<10} … and {len(evals) - 4} more eval metrics (see the report)")
    if steps:
        n = min(LAST, len(steps))
        lines.append(f"  {'reward':<10} {'task':<16} {'mean':>8} {'accuracy':>9}   (last {n} steps)")
        for task in tasks_of(metrics):
            prefix = f"reward/{task}/" if task else "reward/"
            cells = []
            for name in ("mean", "accuracy"):
                values = [r[prefix + name] for r in steps[-n:] if prefix + name in r]
                cells.append(f"{sum(values) / len(values):.4f}" if values else "–")
            lines.append(f"  {'':<10} {task or 'all rows':<16} {cells[0]:>8} {cells[1]:>9}")
    recorded = sorted(rollouts_dir(run_dir).glob("step_*.parquet"))
    if recorded:
        lines.append(f"  {'records':<10} {rollouts_dir(run_dir)} ({len(recorded)} steps)")
    if report is not None:
        lines.append(f"  {'report':<10} {report}")
    else:
        lines.append(f"  {'report':<10} vrft report {run_dir}")
    return "\n".join(lines)


def end_of_run(cfg, run_dir: Path) -> str:
    """What `vrft train` prints last: the report written (when logging.report), then the summary.
    A report that fails is a warning: the run itself succeeded."""
    report = None
    if cfg.logging.report:
        try:
            from vrft.orchestrator.observe.report import build_report

            report = build_report(run_dir)
        except Exception as err:  # noqa: BLE001 - never turn a finished run into a failure
            log.warning("report not written (%s); vrft report %s retries", str(err).splitlines()[0], run_dir)
    return run_summary(run_dir, report)


def cmd_report(args) -> int:
    run_dirs = [Path(d) for d in args.run_dirs]
    for run_dir in run_dirs:
        if not (run_dir / "metrics.jsonl").is_file() and not (run_dir / "rollouts").is_dir():
            raise SystemExit(f"vrft: error: report: {run_dir} has no metrics.jsonl or rollouts/ (not a run dir?)")
    if len(run_dirs) == 1:
        from vrft.orchestrator.observe.report import build_report

        out = build_report(run_dirs[0], Path(args.out) if args.out else None, args.max_rollouts)
    else:
        from vrft.orchestrator.observe.compare import build_comparison

        out = build_comparison(run_dirs, Path(args.out) if args.out else None)
    print(out)
    return 0


def add_report_command(sub) -> None:
    text = "write a run's self-contained HTML report, or several runs side by side"
    description = ("One RUN_DIR: its report (curves, alarms, rollouts with boxes) in RUN_DIR/report.html. "
                   "Several: one page with their curves overlaid per task and component, a table of their "
                   "final and eval numbers (with intervals where logged) and the config keys that differ.")
    p = sub.add_parser("report", help=text, description=description, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (finished or still going)")
    p.add_argument("--out", help="where to write (default RUN_DIR/report.html; several runs: "
                   "compare-<runs>.html beside the first)")
    p.add_argument("--max-rollouts", type=int, default=200, help="one run: completions in the gallery, "
                   "newest first")
    p.set_defaults(func=cmd_report)
