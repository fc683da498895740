"""Checks that run first in `vrft`, before DeepSpeed is imported anywhere (the driver or an actor).

DeepSpeed JIT-builds its CPU communication op with torch's cpp_extension on first use (about a
minute), in TORCH_EXTENSIONS_DIR. torch guards a build with a `lock` file that it creates with
O_EXCL and keeps open until the build ends; every other process waits, polling, for the file to go
away, with no timeout. A build killed half way (Ctrl-C during the first run) leaves the file behind
and every later start hangs silently in `LearnerRank.setup`.

So: the build goes to a cache vrft chooses (and the actors inherit, being started after this), and
a `lock` that no live process holds open is reported in one line with the fix.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

ENV = "TORCH_EXTENSIONS_DIR"


def extensions_dir() -> Path:
    """Where DeepSpeed's op is built: TORCH_EXTENSIONS_DIR if set (`make` sets it); in a source
    checkout run from its own .venv, the folder `make install` fills; else one per Python
    environment under ~/.cache/vrft (a build records its venv's include paths, so venvs sharing a
    cache would rebuild each other's op)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    checkout = Path(__file__).resolve().parents[2]  # orchestrator/runtime/startup.py
    if (checkout / "Makefile").is_file() and Path(sys.prefix).resolve() == (checkout / ".venv").resolve():
        return checkout / ".cache" / "torch_extensions"
    tag = hashlib.sha256(str(Path(sys.prefix).resolve()).encode()).hexdigest()[:10]
    return Path.home() / ".cache" / "vrft" / "torch_extensions" / f"{Path(sys.prefix).name}-{tag}"


def _open_files() -> set[str] | None:
    """Every path some process we can see holds open (Linux /proc); None where there is no /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    held: set[str] = set()
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            for fd in (pid / "fd").iterdir():
                try:
                    held.add(os.readlink(fd))
                except OSError:
                    continue
        except OSError:  # gone, or another user's process (which cannot build in our cache)
            continue
    return held


def stale_locks(root: Path) -> list[Path]:
    """Build locks under `root` that no live process holds open (torch keeps its lock open for the
    whole build). Without /proc nothing is called stale."""
    locks = [p for p in (*root.glob("*/lock"), *root.glob("*/*/lock")) if p.is_file()]
    if not locks:
        return []
    held = _open_files()
    if held is None:
        return []
    return [p for p in locks if str(p.resolve()) not in held and str(p) not in held]


def check_startup() -> None:
    """Call first thing in `vrft`: pins TORCH_EXTENSIONS_DIR (inherited by the Ray actors started
    later) and exits with one line if an interrupted build left a lock there."""
    root = extensions_dir()
    os.environ[ENV] = str(root)
    stale = stale_locks(root) if root.is_dir() else []
    if stale:
        raise SystemExit(f"vrft: error: an interrupted DeepSpeed build left {stale[0]}, and every start "
                         f"would wait for it forever; no process is building: delete it (rm {stale[0]}) "
                         "and run again")
