"""`vrft`: the command line. Every check that can fail cheaply runs before Ray or any actor starts."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from vrft.orchestrator.train.preflight import preflight

log = logging.getLogger("vrft")

EPILOG = """examples:
  vrft make-tiny-model runs/assets/model --size small
  vrft make-synthetic-data runs/assets/color --task color --n 512 --seed 0
  vrft config show configs/local/demo_cpu.yaml learner.lr=2e-4
  vrft train configs/local/demo_cpu.yaml run.steps=5 rollout.n=4
  vrft eval clevr_math --model runs/demo-hf --data data/Visual-Counting-id-test-1k.json
  vrft report runs/demo-20261121-101500 runs/demo-20261122-090000

`vrft COMMAND --help` explains a command and its arguments.
"""
TRAIN_EPILOG = """examples:
  vrft train configs/local/demo_cpu.yaml
  vrft train configs/local/demo_cpu.yaml run.steps=5 rollout.n=4 learner.beta=0
  vrft train --resume runs/demo-20261121-101500
  vrft train configs/local/demo_cpu.yaml --resume auto --run-dir runs/demo-job42

Every config key, its default and what it means: vrft config show CONFIG
"""
SFT_EPILOG = """examples:
  vrft sft configs/local/demo_cpu.yaml sft.steps=50
  vrft sft configs/reason_rft/counting_cot_sft_2b.yaml --run-dir runs/sft-counting
"""
# The commands as `vrft --help` lists them, by what they are for.
COMMAND_GROUPS = {
    "train": ("train", "sft", "reproduce", "config"),
    "data": ("check-data", "prepare-data"),
    "evaluate": ("eval", "report"),
    "export": ("export",),
    "dev assets": ("make-tiny-model", "make-synthetic-data"),
}


def _run_dir(cfg, explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    if cfg.run.resume == "auto":  # a requeued job must find the same folder again: no timestamp
        return Path(cfg.run.output_dir) / cfg.run.name
    return Path(cfg.run.output_dir) / f"{cfg.run.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _load(args) -> tuple:
    from vrft.orchestrator.config.schema import ConfigError, load_config

    try:
        if args.resume and args.resume != "auto":
            run_dir = Path(args.resume)
            if not (run_dir / "config.yaml").is_file():
                raise SystemExit(f"vrft: error: --resume {run_dir}: no config.yaml there")
            cfg = load_config(run_dir / "config.yaml", args.overrides)
        else:
            if not args.config:
                raise SystemExit("vrft: error: give a CONFIG file, or --resume RUN_DIR")
            auto = ["run.resume=auto"] if args.resume == "auto" else []
            cfg = load_config(args.config, [*args.overrides, *auto])
            run_dir = _run_dir(cfg, args.run_dir)
    except ConfigError as err:
        raise SystemExit(f"vrft: error: {err}") from None
    preflight(cfg)
    if cfg.run.resume == "auto":
        from vrft.orchestrator.train.checkpoint import auto_resume

        args.resume = str(run_dir) if auto_resume(run_dir) else None
    return cfg, run_dir


def summary_line(summary: dict[str, float], demo: bool = False) -> str:
    """The end-of-run line: each summary figure under its own name (`accuracy_first20`, or
    `reward_mean_first20` for a task without an accuracy reward). Labelled `DEMO` only for
    `make demo` (it passes --demo): the README shows that line."""
    figures = " ".join(f"{k}={v:.2f}" if k == "minutes" else f"{k}={v:.4f}" for k, v in summary.items())
    return f"{'DEMO' if demo else 'summary:'} {figures}"


def cmd_train(args) -> int:
    cfg, run_dir = _load(args)
    if args.sft_only:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"steps": 0})})
        if cfg.sft.steps == 0:
            raise SystemExit("vrft: error: sft.steps is 0: nothing to do")
    import ray

    from vrft.orchestrator.runtime.cluster import start_ray_while_importing
    from vrft.orchestrator.runtime.faults import RunStopped
    from vrft.orchestrator.runtime.layout import cpu_layout

    log.info("run dir: %s", run_dir)
    # The inputs passed preflight: Ray starts now, sized for the layout the run will use, while
    # another thread imports the training loop (the two overlap: docs/measurements.md).
    started_ray = start_ray_while_importing(cpu_layout(cfg)[0], "vrft.orchestrator.train.loop")
    from vrft.orchestrator.train.loop import train

    try:
        summary = train(cfg, run_dir, resume=bool(args.resume))
    except RunStopped as err:  # actors stopped, Ray gone, the latest checkpoint as it was
        then = f" (continue: vrft train --resume {run_dir})" if err.resumable else ""
        raise SystemExit(f"vrft: error: {err}; run stopped{then}") from None
    finally:
        if started_ray and ray.is_initialized():
            ray.shutdown()
    if args.sft_only:
        print(f"SFT model: {run_dir / 'sft_model'}")
    else:
        print(summary_line(summary, demo=args.demo))
        from vrft.orchestrator.cli.report import end_of_run

        print(end_of_run(cfg, run_dir), file=sys.stderr)  # the report, and where everything is
    return 0


def cmd_make_tiny_model(args) -> int:
    from vrft.testing.tiny_model import make_tiny_model

    out = make_tiny_model(args.out, arch=args.arch, size=args.size, seed=args.seed, tool_tokens=args.tool_tokens,
                          max_pixels=args.max_pixels)
    print(out)
    return 0


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def cmd_make_synthetic_data(args) -> int:
    if args.task in ("glyph", "glyph-crops"):  # the image tools' demo (vrft/testing/glyphs.py)
        from vrft.testing.glyphs import make_glyph_data

        print(make_glyph_data(args.out, n=args.n, seed=args.seed, crops=args.task == "glyph-crops",
                              direct_share=args.direct_share, quarters=args.quarters))
        return 0
    from vrft.testing.synthetic import make_synthetic_data

    out = make_synthetic_data(args.out, task=args.task, n=args.n, seed=args.seed,
                              n_corrupt=args.n_corrupt, image_size=args.image_size)
    print(out)
    return 0


def cmd_export(args) -> int:
    from vrft.orchestrator.train.export import export_checkpoint, learner_dir

    if not (learner_dir(Path(args.checkpoint)) / "vrft_learner.json").is_file():
        raise SystemExit(f"vrft: error: {args.checkpoint} is not a run checkpoint "
                         "(expected RUN_DIR/checkpoints/step_N with a learner/ folder)")
    try:
        print(export_checkpoint(args.checkpoint, args.out, dtype=args.dtype,
                                trust_remote_code=args.trust_remote_code))
    except (OSError, ValueError, KeyError) as err:  # a missing base model, names that do not match
        raise SystemExit(f"vrft: error: export: {str(err).splitlines()[0]}") from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vrft", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Reinforcement fine-tuning of vision-language models with verifiable rewards "
                    "(Visual-RFT, Reason-RFT) on Ray: rollout actors, a verifier pool and a "
                    "DeepSpeed GRPO learner.")
    parser.add_argument("--version", action="version", version=f"vrft {version()}")
    # The commands are listed once, grouped, in the epilog (`grouped_commands`), not as argparse's
    # flat {a,b,c} list and again under "positional arguments".
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS)

    for name, sft_only, text, examples in (
        ("train", False, "run GRPO (after the SFT phase if sft.steps > 0)", TRAIN_EPILOG),
        ("sft", True, "run only the chain-of-thought SFT phase; writes RUN_DIR/sft_model", SFT_EPILOG),
    ):
        p = sub.add_parser(name, help=text, description=text,
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=examples)
        p.add_argument("config", nargs="?", help="YAML experiment config (see configs/)")
        p.add_argument("overrides", nargs="*", help="section.key=value, e.g. learner.lr=1e-6")
        p.add_argument("--resume", metavar="RUN_DIR|auto",
                       help="continue a run from its latest checkpoint; auto: CONFIG's run in --run-dir "
                            "(default run.output_dir/run.name), continued if it has a checkpoint, else "
                            "started (requeued jobs; same as run.resume=auto)")
        p.add_argument("--run-dir", help="where to write (default: run.output_dir/run.name-TIMESTAMP)")
        p.add_argument("--demo", action="store_true",
                       help="label the end-of-run summary line DEMO (what `make demo` passes)")
        p.set_defaults(func=cmd_train, sft_only=sft_only)

    text = "build a random-weight Qwen2-VL, Qwen2.5-VL or Qwen3-VL offline (tests, demo)"
    p = sub.add_parser("make-tiny-model", help=text, description=text)
    p.add_argument("out", help="the folder to write (loadable with from_pretrained)")
    p.add_argument("--arch", choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"], default="qwen2_vl",
                   help="the model family (default qwen2_vl)")
    p.add_argument("--size", choices=["tiny", "small"], default="tiny",
                   help="tiny: ~0.2M parameters, for tests; small: ~10-30M, for the demo")
    p.add_argument("--seed", type=int, default=0, help="seeds the random weights")
    p.add_argument("--tool-tokens", action="store_true", help="Qwen's <tool_call> tags in the vocabulary "
                   "(the image tools' tests and demo)")
    p.add_argument("--max-pixels", type=int, help="the image processor's max_pixels (default: the size's)")
    p.set_defaults(func=cmd_make_tiny_model)

    text = "draw a synthetic image task with PIL (counting, colour, detection, or the tools demo's glyphs)"
    p = sub.add_parser("make-synthetic-data", help=text, description=text)
    p.add_argument("out", help="the save_to_disk folder to write")
    p.add_argument("--task", choices=["counting", "color", "detection", "glyph", "glyph-crops"], required=True,
                   help="what the rows ask (glyph: stripes readable only when zoomed in, 224 px; glyph-crops: "
                        "the zoomed quarters alone, one turn, to teach the demo's model to see; docs/tools.md)")
    p.add_argument("--n", type=int, required=True, help="rows to draw")
    p.add_argument("--seed", type=int, default=0, help="seeds the drawing")
    p.add_argument("--n-corrupt", type=int, default=0, help="rows with undecodable images (tests)")
    p.add_argument("--image-size", type=int, default=56, help="image side in pixels")
    p.add_argument("--direct-share", type=fraction, default=0.0, help="glyph: the share (0 to 1) of tool traces "
                   "that answer at once, without the tool (the demo's SFT then leaves GRPO when to look to learn)")
    p.add_argument("--quarters", type=int, choices=range(1, 5), default=4, metavar="{1..4}", help="glyph: the "
                   "mark lies in one of the first N quarters (top left, top right, bottom left, bottom right)")
    p.set_defaults(func=cmd_make_synthetic_data)

    from vrft.orchestrator.cli.data import add_data_commands
    from vrft.orchestrator.cli.evaluate import add_eval_command
    from vrft.orchestrator.cli.explain import add_config_command
    from vrft.orchestrator.cli.report import add_report_command
    from vrft.orchestrator.cli.reproduce import add_reproduce_command

    add_data_commands(sub)
    add_eval_command(sub)
    add_reproduce_command(sub)
    add_report_command(sub)
    add_config_command(sub)

    text = "write a checkpoint's policy as a Hugging Face folder (safetensors)"
    p = sub.add_parser("export", help=text, description=text)
    p.add_argument("checkpoint", help="RUN_DIR/checkpoints/step_N")
    p.add_argument("out", help="output folder, loadable with from_pretrained")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="auto: the base model's dtype")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the base model's own code from its folder or hub repo (never taken "
                        "from the checkpoint)")
    p.set_defaults(func=cmd_export)
    parser.usage = "vrft [-h] [--version] COMMAND [ARGS]"
    parser.epilog = grouped_commands(sub) + "\n\n" + EPILOG
    return parser


def grouped_commands(sub) -> str:
    """The commands under their COMMAND_GROUPS headings, each with its one-line help. A command
    added without a group is listed under "other" rather than lost."""
    helps = {action.dest: action.help for action in sub._choices_actions}  # argparse keeps them here
    width = max(len(name) for name in helps) + 2
    lines, listed = ["commands:"], set()
    for group, names in COMMAND_GROUPS.items():
        lines.append(f"  {group}")
        for name in names:
            lines.append(f"    {name:<{width}}{helps[name]}")
            listed.add(name)
    others = [name for name in helps if name not in listed]
    if others:
        lines.append("  other")
        lines += [f"    {name:<{width}}{helps[name]}" for name in others]
    return "\n".join(lines)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("vrft")
    except PackageNotFoundError:  # a checkout used without an install (vrft/__init__.py)
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    from vrft.orchestrator.observe.console import setup_console

    setup_console()
    args = build_parser().parse_args(argv)
    from vrft.orchestrator.runtime.startup import check_startup

    check_startup()  # before anything imports DeepSpeed: its build cache, and a stale build lock
    # `ray job stop` sends SIGTERM: unwind through the same clean shutdown as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    from vrft.orchestrator.runtime.faults import RunStopped

    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("vrft: interrupted; actors stopped", file=sys.stderr)
        return 130
    except RunStopped as err:  # an actor lost or not starting, outside `vrft train` (vrft eval)
        print(f"vrft: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
