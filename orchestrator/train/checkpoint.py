"""Run checkpoints: the learner's state (DeepSpeed model, optimizer and LR scheduler; each rank's RNG)
plus the loop's (step, policy version, data order and position, history, the driver's RNG; rollout
seeds derive from the run seed and the step, so they need no state).

    run_dir/checkpoints/step_000010/{learner/, state.json, rng.json}
    run_dir/checkpoints/latest          -> "step_000010"

Atomicity: a checkpoint is written into `step_N.tmp` and renamed into place only when complete
(files fsynced first), and `latest` is replaced by a rename too. A crash at any point leaves either
the previous checkpoint or the new one as what loads, never a partial one: `*.tmp` folders are
never loaded (and are cleared by the next write), and if `latest` names a folder that is not there,
the newest complete `step_N` folder is used instead. `prune_checkpoints` keeps the newest N
(`run.keep_last`) and never the one `latest` names. No file here is a pickle: state and RNG are
JSON, the learner's DeepSpeed files are read weights-only (vrft.learner.checkpointing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from vrft.learner.checkpointing import load_rng, save_rng

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
    save_rng(tmp / "rng.json")  # the driver's own RNG streams
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


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a kill at any moment leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _step_of(path: Path) -> int:
    return int(_STEP_DIR.match(path.name).group(1))


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
    found = sorted((p for p in root.glob("step_*") if _complete(p)), key=_step_of) if root.is_dir() else []
    return found[-1] if found else None


def has_checkpoint(run_dir: Path) -> bool:
    """Whether `--resume` of `run_dir` has a complete checkpoint to continue from."""
    return latest_checkpoint(Path(run_dir)) is not None


def prune_checkpoints(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` complete checkpoints (0: keep all); the one that loads
    (`latest_checkpoint`) and the one `checkpoints/best` names (`run.keep_best`) are always kept.
    Returns what was deleted."""
    latest = latest_checkpoint(Path(run_dir))
    if keep_last <= 0 or latest is None:
        return []
    done = sorted((p for p in latest.parent.glob("step_*") if _complete(p)), key=_step_of)
    keep = set(done[-keep_last:]) | {latest}
    best = latest.parent / "best"
    if best.is_file():
        keep.add(latest.parent / best.read_text().strip())
    gone = [p for p in done if p not in keep]
    for path in gone:
        # Renamed out of the step_N pattern first: a kill mid-delete leaves no half checkpoint
        # that would look complete (the next write clears *.tmp).
        doomed = path.with_name(path.name + ".del.tmp")
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return gone


def read_state(path: Path) -> dict:
    return json.loads((path / "state.json").read_text())


def restore_rng(path: Path) -> bool:
    """Put the driver's RNG streams back as they were when `path` was written."""
    return load_rng(path / "rng.json")



def auto_resume(run_dir: Path) -> bool:
    """`run.resume: auto` (a requeued job re-running the same command): whether to continue from the
    run dir's latest complete checkpoint; says which in one line. Starting fresh in a dir an earlier
    attempt left without a checkpoint drops that attempt's metric records (they would repeat)."""
    run_dir = Path(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        print(f"resume auto: continuing from {ckpt} (step {read_state(ckpt)['step']})", file=sys.stderr)
        return True
    from vrft.orchestrator.observe.tracking import truncate_metrics

    truncate_metrics(run_dir / "metrics.jsonl", 0)
    print(f"resume auto: no complete checkpoint in {run_dir}: starting fresh", file=sys.stderr)
    return False
