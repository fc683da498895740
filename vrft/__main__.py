"""`python -m vrft ...`: the `vrft` command, also from a checkout that is not installed."""

from vrft.orchestrator.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
