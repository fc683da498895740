"""Run-checkpoint housekeeping without a learner: atomic text writes, `run.keep_last` retention
(the checkpoint that loads always survives), whether a run has a checkpoint to resume, and RNG
state as JSON (a pickled RNG file from an older run is ignored, never unpickled)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from vrft.learner.checkpointing import load_rng, save_rng
from vrft.orchestrator.train.checkpoint import (
    has_checkpoint,
    latest_checkpoint,
    prune_checkpoints,
    write_checkpoint,
    write_text_atomic,
)


def _write(run_dir: Path, step: int) -> Path:
    return write_checkpoint(run_dir, step, {"step": step},
                            lambda path: Path(path).mkdir() or (Path(path) / "w").write_text(str(step)))


def test_write_text_atomic_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    write_text_atomic(path, "old: 1\n")
    write_text_atomic(path, "new: 2\n")
    assert path.read_text() == "new: 2\n" and not list(tmp_path.glob("*.tmp"))

    def killed(*_):  # the process dies between writing the new text and publishing it
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(path, "half")
    assert path.read_text() == "new: 2\n"


def test_prune_keeps_the_newest_and_never_the_latest(tmp_path):
    assert not has_checkpoint(tmp_path) and prune_checkpoints(tmp_path, 1) == []
    for step in (2, 4, 6, 8):
        _write(tmp_path, step)
    assert has_checkpoint(tmp_path)
    assert prune_checkpoints(tmp_path, 0) == []  # 0: keep everything
    gone = prune_checkpoints(tmp_path, 2)
    assert [p.name for p in gone] == ["step_000002", "step_000004"]
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000006", "step_000008"]

    # After a resume rewrote an older step, `latest` names it: it is kept even if not the newest.
    (root / "latest").write_text("step_000006")
    prune_checkpoints(tmp_path, 1)
    assert latest_checkpoint(tmp_path).name == "step_000006"
    assert (root / "step_000006").is_dir() and (root / "step_000008").is_dir()


def test_no_checkpoint_when_only_partial_writes_exist(tmp_path):
    (tmp_path / "checkpoints" / "step_000003.tmp").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_000004").mkdir()  # no state.json: never completed
    assert not has_checkpoint(tmp_path)


def test_rng_state_round_trips_as_json(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_rng(tmp_path / "rng.json")
    json.loads((tmp_path / "rng.json").read_text())  # plain JSON, nothing to unpickle
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    assert load_rng(tmp_path / "rng.json")
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_pickled_rng_file_is_ignored(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save(Evil(), tmp_path / "rng_rank0.pt")  # what an older (or hostile) checkpoint holds
    assert load_rng(tmp_path / "rng_rank0.json") is False
    assert not marker.exists()
