"""`vrft reproduce NAME`: prepare → train → evaluate → report for one paper row (orchestrator/cli/recipes.py)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vrft.orchestrator.cli.data import add_data_commands
from vrft.orchestrator.cli.evaluate import add_eval_command

EPILOG = """examples:
  vrft reproduce --list
  vrft reproduce visual_rft/coco_8cls_4shot_2b --dry-run
  vrft reproduce reason_rft/counting_reason_rft_2b
  vrft reproduce local/reproduce_cpu model.path=runs/assets/model-tiny     # a CPU-sized recipe
"""


def run_command(add_commands, argv: list[str]) -> int:
    """One vrft subcommand, parsed and run as `vrft ARGV` would (prepare-data, eval)."""
    parser = argparse.ArgumentParser(prog="vrft")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def cmd_reproduce(args) -> int:
    from vrft.orchestrator.cli.recipes import check_gpus, list_recipes, plan, recipe_file, report
    from vrft.orchestrator.runtime.placement import gpus_needed
    from vrft.orchestrator.train.preflight import load_run_config, preflight

    if args.list or not args.name:
        print("\n".join(list_recipes()))
        return 0
    try:
        path = recipe_file(args.name)
    except ValueError as err:
        raise SystemExit(f"vrft: error: reproduce: {err}") from None
    cfg = load_run_config(str(path), args.overrides)
    if cfg.recipe is None:
        raise SystemExit(f"vrft: error: reproduce: {path} has no recipe: section (it is a plain training config)")
    if gpus_needed(cfg) > cfg.recipe.gpus:
        raise SystemExit(f"vrft: error: reproduce: the placement asks for {gpus_needed(cfg)} GPUs but "
                         f"recipe.gpus is {cfg.recipe.gpus}")
    run_dir = Path(args.run_dir) if args.run_dir else \
        Path(cfg.run.output_dir) / f"{cfg.run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    steps = plan(cfg, run_dir)
    print(f"recipe: {cfg.recipe.paper}\nGPUs: {cfg.recipe.gpus}\nrun dir: {run_dir}")
    for i, step in enumerate(steps, start=1):
        print(f"  {i}. {step.what}")
    if args.dry_run:
        return 0
    try:
        check_gpus(cfg)
    except ValueError as err:
        raise SystemExit(f"vrft: error: reproduce: {err}") from None
    preps = iter(cfg.recipe.prepare)
    for step in steps:
        print(f"== {step.what}", flush=True)
        if step.kind == "prepare":
            out = Path(next(preps).out)
            if out.exists():
                print(f"   {out} exists: kept")
                continue
            run_command(add_data_commands, step.argv)
        elif step.kind in ("sft", "train"):
            if step.kind == "sft" and cfg.recipe.kind == "sft_rft":
                continue  # one `train` call runs both phases
            preflight(cfg)
            from vrft.orchestrator.train.loop import train

            phase = cfg if step.kind == "train" else cfg.model_copy(update={"run": cfg.run.model_copy(update={"steps": 0})})
            train(phase, run_dir)
        elif step.kind == "eval":
            run_command(add_eval_command, step.argv)
        else:
            result = report(cfg, run_dir)
            for row in result["rows"]:
                measured = "—" if row["vrft"] is None else f"{row['vrft']:.2f}"
                print(f"REPRODUCE {row['metric']} vrft={measured} paper={row['paper']} "
                      f"tolerance={row['tolerance']} within={'yes' if row['within'] else 'no'}"
                      + (" prompt=not_verbatim" if row.get("prompt_verbatim") is False else ""))
    return 0


DESCRIPTION = ("Run a paper recipe (configs/<NAME>.yaml with a recipe: section): prepare the data if "
               "needed, train (SFT and/or GRPO), evaluate on the paper's benchmarks and write "
               "RUN_DIR/reproduce.md beside the paper's numbers and the tolerance. Stops in one line before "
               "anything starts when the machine lacks the recipe's GPUs.")


def add_reproduce_command(sub) -> None:
    p = sub.add_parser("reproduce", help="one paper row end to end: prepare, train, evaluate, report",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("name", nargs="?", help="a recipe under configs/ (e.g. visual_rft/coco_8cls_4shot_2b) or a path")
    p.add_argument("overrides", nargs="*", help="section.key=value")
    p.add_argument("--dry-run", action="store_true", help="print the resolved steps and the GPUs needed")
    p.add_argument("--list", action="store_true", help="list the recipes")
    p.add_argument("--run-dir", help="where to write (default: run.output_dir/run.name-TIMESTAMP)")
    p.set_defaults(func=cmd_reproduce)
