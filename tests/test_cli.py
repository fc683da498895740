"""Bad input fails fast: one line naming the problem, a non-zero exit, and no Ray started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


def run_vrft(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True,
                          text=True, timeout=120)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("override, needle", [
    ("learner.no_such_key=1", "learner.no_such_key"),
    ("rollout.n=0", "rollout.n"),
    ("surprise.key=1", "surprise"),
])
def test_bad_config_one_line(tiny_model, color_data, override, needle):
    proc = run_vrft("train", str(CONFIG), f"model.path={tiny_model}", f"data.path={color_data}", override)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Ray" not in proc.stderr


def test_missing_dataset_path(tiny_model, tmp_path):
    missing = tmp_path / "nowhere" / "data"
    proc = run_vrft("train", str(CONFIG), f"model.path={tiny_model}", f"data.path={missing}")
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and "data.path" in lines[0] and str(missing) in lines[0], proc.stderr


def test_unknown_reward_fails_before_ray(tiny_model, color_data):
    proc = run_vrft("train", str(CONFIG), f"model.path={tiny_model}", f"data.path={color_data}",
                    "rewards=[{name: no_such_reward}]")
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and "no_such_reward" in lines[0], proc.stderr


def test_help_explains_commands():
    proc = run_vrft("--help")
    assert proc.returncode == 0
    for command in ("train", "sft", "make-tiny-model", "make-synthetic-data"):
        assert command in proc.stdout


def _ray_daemons() -> set[int]:
    import psutil

    names = {"raylet", "gcs_server"}
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in names}


def test_ctrl_c_stops_actors_and_ray(tiny_model, color_data, tmp_path):
    """SIGINT mid-run: exit code 130, and the local Ray the run started is gone with its actors."""
    import signal
    import time

    before = _ray_daemons()
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "train", str(CONFIG),
                             f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=500",
                             "rollout.num_workers=1", "verifier.num_actors=1", "learner.world_size=1",
                             "--run-dir", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and '"step"' in metrics.read_text():
            break
        time.sleep(1)
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    time.sleep(2)
    assert _ray_daemons() <= before, "Ray daemons left behind"
