"""`vrft export` treats a checkpoint folder as untrusted and OUT as someone's folder: a file that
holds a pickle (here one that would create a file) is refused without running it, and OUT is
replaced only when an earlier export wrote it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vrft.learner.checkpointing import UnsafeCheckpointError, consolidated_state_dict
from vrft.orchestrator.train.export import MARKER, export_checkpoint

VRFT = Path(sys.executable).with_name("vrft")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _checkpoint(root: Path, zero_stage: int, files: dict[str, object]) -> Path:
    """A run checkpoint's learner folder as DeepSpeed lays it out, with the given file contents."""
    learner = root / "step_000002" / "learner"
    (learner / "state").mkdir(parents=True)
    (learner / "vrft_learner.json").write_text(json.dumps(
        {"tag": "state", "model_path": str(root / "no-model"), "trust_remote_code": True,
         "zero_stage": zero_stage, "world_size": 1, "version": 2, "lora": None}))
    (learner / "state" / "latest").write_text("state")
    for name, obj in files.items():
        torch.save(obj, learner / "state" / name)
    return learner.parent


def _export(ckpt: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VRFT), "export", str(ckpt), str(out)], capture_output=True, text=True,
                          timeout=120)


def test_export_refuses_a_pickled_checkpoint_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = _checkpoint(tmp_path, 0, {"mp_rank_00_model_states.pt": {"module": _Evil(marker)}})
    done = _export(ckpt, tmp_path / "out")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vrft: error: export: refusing to load"), done.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_zero_checkpoint_readers_refuse_a_pickle(tmp_path):
    """ZeRO 1-3 go through DeepSpeed's zero_to_fp32, which asks torch for weights_only=False."""
    marker = tmp_path / "pwned"
    evil = {"buffer_names": [], "param_shapes": _Evil(marker)}
    ckpt = _checkpoint(tmp_path, 2, {"zero_pp_rank_0_mp_rank_00_model_states.pt": evil,
                                     "zero_pp_rank_0_mp_rank_00_optim_states.pt": {"x": _Evil(marker)}})
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        consolidated_state_dict(ckpt / "learner")
    assert not marker.exists()


def test_export_never_replaces_a_folder_it_did_not_write(tmp_path):
    ckpt = _checkpoint(tmp_path, 0, {"mp_rank_00_model_states.pt": {"module": {}}})
    for taken in (tmp_path / "out", tmp_path / "out2.tmp"):  # OUT itself, or its scratch folder
        taken.mkdir()
        (taken / "precious.txt").write_text("mine")
        done = _export(ckpt, tmp_path / taken.name.removesuffix(".tmp"))
        assert done.returncode != 0
        assert "is not an earlier vrft export" in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert (taken / "precious.txt").read_text() == "mine"


def test_an_earlier_export_may_be_replaced(tmp_path):
    """OUT with the marker passes the check (the export then fails on the bad file, OUT untouched)."""
    marker = tmp_path / "pwned"
    ckpt = _checkpoint(tmp_path, 0, {"mp_rank_00_model_states.pt": {"module": _Evil(marker)}})
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text("{}")
    with pytest.raises(UnsafeCheckpointError):
        export_checkpoint(ckpt, out)
    assert (out / MARKER).is_file() and not marker.exists()
