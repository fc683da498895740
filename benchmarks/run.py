"""`make bench`: run every benchmarks/bench_*.py module's main(); each prints its own
`BENCH <name> <value> <unit>` lines (measured in this run) and `SIM <name> <value> <unit>` lines
(simulated or derived, not measured). A failing benchmark is reported and the others still run."""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("WANDB_MODE", "offline")


def main(argv: list[str]) -> int:
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    failed = []
    for name in names:
        start = time.perf_counter()
        print(f"# {name}", file=sys.stderr, flush=True)
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"# {name}: {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
