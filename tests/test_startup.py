"""Start-up never hangs on an interrupted DeepSpeed build: a `lock` that no process holds open is
reported in one line with the fix (and `vrft` exits in seconds); a lock held by a live build is
left alone; the build cache is vrft's own unless TORCH_EXTENSIONS_DIR says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vrft.orchestrator.runtime.startup import check_startup, extensions_dir, stale_locks

VRFT = Path(sys.executable).with_name("vrft")
CHECKOUT = Path(__file__).resolve().parent.parent


def _lock(root: Path) -> Path:
    lock = root / "deepspeed_shm_comm" / "lock"  # where torch's FileBaton puts it for this op
    lock.parent.mkdir(parents=True)
    return lock


def test_a_lock_left_by_a_killed_build_is_reported_with_the_fix(tmp_path, monkeypatch):
    lock = _lock(tmp_path)
    lock.touch()
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert stale_locks(tmp_path) == [lock]
    with pytest.raises(SystemExit) as exit_:
        check_startup()
    message = str(exit_.value.code)
    assert message.startswith("vrft: error:") and f"rm {lock}" in message and "\n" not in message


def test_a_lock_held_by_a_live_build_is_not_stale(tmp_path, monkeypatch):
    lock = _lock(tmp_path)
    # What torch's FileBaton does: create the file exclusively and keep it open while building.
    builder = subprocess.Popen([sys.executable, "-c", "import os, sys, time; "
                                "os.open(sys.argv[1], os.O_CREAT | os.O_EXCL); print('ok', flush=True); "
                                "time.sleep(60)", str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout.readline().strip() == "ok"
        monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
        assert stale_locks(tmp_path) == []
        check_startup()
    finally:
        builder.kill()
        builder.wait()
    assert stale_locks(tmp_path) == [lock]  # its builder is gone now


def test_the_build_cache_is_chosen_before_deepspeed_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert extensions_dir() == tmp_path  # `make` sets it: kept
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    chosen = extensions_dir()
    if Path(sys.prefix).resolve() == (CHECKOUT / ".venv").resolve():
        assert chosen == CHECKOUT / ".cache" / "torch_extensions"  # what `make install` filled
    else:
        assert chosen.is_relative_to(Path.home() / ".cache" / "vrft" / "torch_extensions")
    check_startup()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(chosen)  # the actors inherit it


def test_vrft_exits_at_once_on_a_stale_lock(tmp_path):
    lock = _lock(tmp_path)
    lock.touch()
    start = time.monotonic()
    done = subprocess.run([str(VRFT), "export", str(tmp_path / "ckpt"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)})
    assert done.returncode != 0 and time.monotonic() - start < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"rm {lock}" in lines[0], done.stderr
