"""Exact resume: a run SIGKILLed between two checkpoints and resumed from the last one gives, for
the steps after the resume, the same per-step metrics as an uninterrupted run with the same seed.

Both runs go through the real CLI (`vrft train`) in their own process group, each with its own
local Ray cluster, a 2-rank DeepSpeed learner with LoRA dropout (so the ranks' RNG states matter) and
a shuffled dataset (so the data order and position matter)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"
# Same code, same seed, same CPU kernels: the metrics agree to float32 round-off (observed: equal).
RTOL = 1e-5
COMPARED = ("reward/mean", "reward/accuracy", "rollout/tokens", "learner/loss", "learner/kl",
            "learner/grad_norm", "policy_version")


def vrft(*args: str) -> subprocess.Popen:
    """`vrft train ARGS` in a session of its own, so that SIGKILL reaches everything it started."""
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def steps(run_dir: Path) -> dict[int, dict]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)  # a half-written line would fail here: the resume must drop it
        if "step" in record and not record.get("summary"):
            out[record["step"]] = record
    return out


def test_sigkill_between_checkpoints_then_resume_matches_uninterrupted(tiny_model, color_data, tmp_path):
    overrides = [CONFIG.as_posix(), f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=4",
                 "run.save_every=2", "learner.lr=1e-2", "logging.wandb=false",
                 "learner.lora_rank=4", "learner.lora_dropout=0.1",
                 # one engine and one verifier: the resume path does not depend on their count
                 "rollout.num_workers=1", "verifier.num_actors=1"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"

    proc = vrft(*overrides, "--run-dir", str(reference))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]

    proc = vrft(*overrides, "--run-dir", str(killed))
    latest = killed / "checkpoints" / "latest"
    deadline = time.time() + 600
    # Kill as soon as step 2's checkpoint is published: step 4's is two whole steps away (seconds),
    # so the kill lands between the two checkpoints however fast the machine is.
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text() == "step_000002":
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, no cleanup
    proc.wait(timeout=60)
    assert (killed / "checkpoints" / "latest").read_text() == "step_000002"
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
