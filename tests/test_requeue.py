"""Requeue-safe runs: the SAME command (`vrft train CONFIG --resume auto --run-dir DIR`) starts a run
fresh, and after a SIGKILL continues it from its latest checkpoint, with the metrics of an
uninterrupted run and one wandb run id throughout (wandb offline). The pattern of test_resume.py."""

from __future__ import annotations

import os
import signal

import pytest
from test_resume import COMPARED, CONFIG, RTOL, steps, vrft, wait_for_step_2_checkpoint


def _wandb_ids(run_dir) -> set[str]:
    return {p.name.rsplit("-", 1)[1] for p in (run_dir / "wandb").glob("offline-run-*")}


def test_sigkill_then_same_command_resumes_auto(tiny_model, color_data, tmp_path):
    common = [CONFIG.as_posix(), f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=3",
              "run.save_every=2", "learner.lr=1e-2", "logging.wandb=true",
              "learner.lora_rank=4", "learner.lora_dropout=0.1",
              "rollout.num_workers=1", "verifier.num_actors=1", "--resume", "auto"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"

    proc = vrft(*common, "--run-dir", str(reference))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert f"resume auto: no complete checkpoint in {reference}: starting fresh" in out

    command = [*common, "--run-dir", str(killed)]
    proc = vrft(*command)
    wait_for_step_2_checkpoint(proc, killed)
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # a preempted job: no cleanup
    proc.wait(timeout=60)
    first_id = (killed / "wandb_run_id").read_text().strip()

    proc = vrft(*command)  # the requeued job: the same command line
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert f"resume auto: continuing from {killed / 'checkpoints' / 'step_000002'} (step 2)" in out

    want, got = steps(reference), steps(killed)
    assert sorted(got) == [1, 2, 3]
    for key in COMPARED:
        assert got[3][key] == pytest.approx(want[3][key], rel=RTOL, abs=1e-7), key
    # One wandb run: the id kept in the run dir, every attempt's (offline) run under it.
    assert (killed / "wandb_run_id").read_text().strip() == first_id
    assert _wandb_ids(killed) == {first_id} and len(list((killed / "wandb").glob("offline-run-*"))) == 2
