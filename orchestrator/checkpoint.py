"""Run checkpoints: the learner's state (DeepSpeed model, optimizer and LR scheduler; each rank's RNG)
plus the loop's (step, policy version, data order and position, history, the driver's RNG; rollout
seeds derive from the run seed and the step, so they need no state).

    run_dir/checkpoints/step_000010/{learner/, state.json, rng.pt}
    run_dir/checkpoints/latest          -> "step_000010"

Atomicity: a checkpoint is written into `step_N.tmp` and renamed into place only when complete
(files fsynced first), and `latest` is replaced by a rename too. A crash at any point leaves either
the previous checkpoint or the new one as what loads, never a partial one: `*.tmp` folders are
never loaded (and are cleared by the next write), and if `latest` names a folder that is not there,
the newest complete `step_N` folder is used instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from learner.checkpointing import load_rng, save_rng

_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:06d}"


def _fsync_tree(root: Path) -> None:
    """Flush every file (and folder entry) under `root` to disk before the rename publishes it."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(run_dir: Path, step: int, state: dict, save_learner) -> Path:
    """`save_learner(path)` writes the learner's state into `path` (a folder it may create)."""
    final = checkpoint_dir(run_dir, step)
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.tmp"):  # left by a crash during an earlier write
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir()
    save_learner(str(tmp / "learner"))
    save_rng(tmp / "rng.pt")  # the driver's own RNG streams
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    _fsync_tree(tmp)
    old = None
    if final.exists():  # the same step written again (e.g. after a resume): swap, then delete
        old = final.with_name(final.name + ".old.tmp")
        os.replace(final, old)
    os.replace(tmp, final)
    pointer = root / "latest.tmp"
    pointer.write_text(final.name)
    with open(pointer, "rb") as f:
        os.fsync(f.fileno())
    os.replace(pointer, root / "latest")
    _fsync_dir(root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _complete(path: Path) -> bool:
    return _STEP_DIR.match(path.name) is not None and (path / "state.json").is_file()


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint `latest` names, or the newest complete one if that is missing; None if none."""
    root = run_dir / "checkpoints"
    pointer = root / "latest"
    if pointer.is_file():
        path = root / pointer.read_text().strip()
        if _complete(path):
            return path
    found = sorted((p for p in root.glob("step_*") if _complete(p)),
                   key=lambda p: int(_STEP_DIR.match(p.name).group(1))) if root.is_dir() else []
    return found[-1] if found else None


def read_state(path: Path) -> dict:
    return json.loads((path / "state.json").read_text())


def restore_rng(path: Path) -> bool:
    """Put the driver's RNG streams back as they were when `path` was written."""
    return load_rng(path / "rng.pt")

