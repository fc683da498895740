"""Run checkpoints: the learner's DeepSpeed state plus the loop's state (step, policy version, data
position; rollout seeds derive from the run seed and the step). A checkpoint is written into a temporary folder and renamed into place, and
`latest` is replaced atomically, so a crash mid-write never leaves a checkpoint that would load."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:06d}"


def write_checkpoint(run_dir: Path, step: int, state: dict, save_learner) -> Path:
    """`save_learner(path)` writes the learner's state into `path` (a folder it may create)."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_learner(str(tmp / "learner"))
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = run_dir / "checkpoints" / "latest.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, run_dir / "checkpoints" / "latest")
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def read_state(path: Path) -> dict:
    return json.loads((path / "state.json").read_text())
