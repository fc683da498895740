"""`vrft config show CONFIG [overrides]`: the resolved run config, every key with its value, its
default where it differs, and what it means (the schema's field descriptions)."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  vrft config show configs/local/test_cpu.yaml
  vrft config show configs/local/demo_cpu.yaml learner.lr=2e-4 rollout.n=4
"""


def cmd_config_show(args) -> int:
    from vrft.orchestrator.config.describe import describe
    from vrft.orchestrator.config.schema import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        raise SystemExit(f"vrft: error: {err}") from None
    print(f"# {args.config}" + (f" with {' '.join(args.overrides)}" if args.overrides else "")
          + ": every key, its value (and default where it differs) and what it means")
    print("\n".join(describe(cfg)))
    return 0


def add_config_command(sub) -> None:
    text = "show a config resolved: every key, its value and default, and what it means"
    p = sub.add_parser("config", help=text, description=text)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help=text, description=text, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("config", help="YAML experiment config (see configs/)")
    show.add_argument("overrides", nargs="*", help="section.key=value, applied as `vrft train` would")
    show.set_defaults(func=cmd_config_show)
