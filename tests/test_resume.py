"""Exact resume: a run SIGKILLed between two checkpoints (the driver, or one learner rank) and
resumed from the last one gives, for the steps after the resume, the same per-step metrics as an
uninterrupted run with the same seed.

All runs go through the real CLI (`vrft train`) in their own process group, each with its own
local Ray cluster, a 2-rank DeepSpeed learner with LoRA dropout (so the ranks' RNG states matter) and
a shuffled dataset (so the data order and position matter)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import left_behind, process_tree

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"
# Same code, same seed, same CPU kernels: the metrics agree to float32 round-off (observed: equal).
RTOL = 1e-5
COMPARED = ("reward/mean", "reward/accuracy", "rollout/tokens", "learner/loss", "learner/kl",
            "learner/grad_norm", "policy_version")


def vrft(*args: str) -> subprocess.Popen:
    """`vrft train ARGS` in a session of its own, so that SIGKILL reaches everything it started."""
    return subprocess.Popen([sys.executable, "-m", "vrft.orchestrator.cli.main", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def steps(run_dir: Path) -> dict[int, dict]:
    """Each step's record; every step exactly once (a resume that ran a step again, or started over
    from step 0, would log it twice)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)  # a half-written line would fail here: the resume must drop it
        if "step" in record and not record.get("summary"):
            assert record["step"] not in out, f"step {record['step']} logged twice"
            out[record["step"]] = record
    return out


@pytest.fixture(scope="module")
def overrides(tiny_model, color_data) -> list[str]:
    return [CONFIG.as_posix(), f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=4",
            "run.save_every=2", "learner.lr=1e-2", "logging.wandb=false",
            "learner.lora_rank=4", "learner.lora_dropout=0.1",
            # one engine and one verifier: the resume path does not depend on their count
            "rollout.num_workers=1", "verifier.num_actors=1"]


@pytest.fixture(scope="module")
def reference(overrides, tmp_path_factory) -> Path:
    """The uninterrupted run both tests compare with."""
    run_dir = tmp_path_factory.mktemp("resume") / "reference"
    proc = vrft(*overrides, "--run-dir", str(run_dir))
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    return run_dir


def wait_for_step_2_checkpoint(proc: subprocess.Popen, run_dir: Path) -> None:
    """Until step 2's checkpoint is published: step 4's is two whole steps away (seconds), so a
    kill now lands between the two checkpoints however fast the machine is."""
    latest = run_dir / "checkpoints" / "latest"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text() == "step_000002":
            return
        time.sleep(0.02)
    raise AssertionError(f"no step 2 checkpoint (exit {proc.poll()})")


def resume_matches(reference: Path, killed: Path) -> None:
    assert (killed / "checkpoints" / "latest").read_text() == "step_000002"
    assert (killed / "checkpoints" / "step_000002" / "state.json").is_file()
    assert not (killed / "checkpoints" / "step_000004").exists()
    proc = vrft("--resume", str(killed))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "resumed from" in out
    want, got = steps(reference), steps(killed)
    assert sorted(got) == [1, 2, 3, 4]
    for step in (3, 4):  # the steps after the resume
        for key in COMPARED:
            assert got[step][key] == pytest.approx(want[step][key], rel=RTOL, abs=1e-7), (step, key)


def test_sigkill_between_checkpoints_then_resume_matches_uninterrupted(overrides, reference, tmp_path):
    killed = tmp_path / "killed"
    proc = vrft(*overrides, "--run-dir", str(killed))
    wait_for_step_2_checkpoint(proc, killed)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, no cleanup
    proc.wait(timeout=60)
    resume_matches(reference, killed)


def test_lost_learner_rank_stops_in_one_line_then_resume_matches(overrides, reference, tmp_path):
    """SIGKILL of learner rank 1's process: the run stops within 60 s (its peer is not left waiting
    in a collective), says so in one line naming the rank, leaves no process behind and the last
    checkpoint as it was; `--resume` then continues exactly."""
    killed, log = tmp_path / "killed", tmp_path / "vrft.log"
    with open(log, "w") as out:  # a file, not a pipe: read while the run goes on
        proc = subprocess.Popen([sys.executable, "-m", "vrft.orchestrator.cli.main", "train", *overrides,
                                 "--run-dir", str(killed)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    wait_for_step_2_checkpoint(proc, killed)
    rank1 = int(re.search(r"learner rank 1 pid (\d+)", log.read_text()).group(1))
    started = process_tree(proc.pid) - {proc.pid}
    os.kill(rank1, signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    seconds = time.monotonic() - killed_at
    print(f"stopped {seconds:.1f} s after learner rank 1 was killed")  # shown by pytest -rP
    text = log.read_text()
    assert proc.returncode not in (0, 130), text[-3000:]
    assert seconds < 60, seconds
    errors = [line for line in text.splitlines() if line.startswith("vrft: error")]
    assert len(errors) == 1 and f"learner rank 1 (pid {rank1})" in errors[0] and "died" in errors[0], errors
    time.sleep(2)
    assert not left_behind(started), f"left behind: {left_behind(started)}"
    resume_matches(reference, killed)
