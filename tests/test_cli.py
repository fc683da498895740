"""Bad input fails fast: one line naming the problem, a non-zero exit, and no Ray started. Ctrl-C
and SIGTERM stop a run the same way: exit 130, every process it started gone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


def run_vrft(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vrft.orchestrator.cli.main", *args], capture_output=True,
                          text=True, timeout=120)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("overrides, needle", [
    (["learner.no_such_key=1"], "learner.no_such_key"),
    (["rollout.n=0"], "rollout.n"),
    (["surprise.key=1"], "surprise"),
    # values that used to pass validation and fail (or silently misbehave) after Ray started
    (["learner.lr=.inf"], "learner.lr: must be a finite number"),
    (["learner.grad_clip=.inf"], "learner.grad_clip"),
    (["verifier.timeout_s=.inf"], "verifier.timeout_s"),
    (["rollout.n=true"], "rollout.n: expected a number"),
    (["learner.advantage=nope"], "learner.advantage"),
    (["learner.policy_loss=nope"], "learner.policy_loss"),
    (["learner.advantage_options={foo: 1}"], "no option 'foo'"),
    (["learner.policy_loss=dual_clip", "learner.policy_loss_options={clip_c: 0.5}"], "clip_c"),
    (["run.seed=-5"], "run.seed"),
    (["data.task=bogus"], "data.task 'bogus' is unknown"),
    (["run.name=../../x"], "run.name"),
    (["rollout.vllm={gpu_memory_utilization: 0.5}"], "rollout.vllm"),
])
def test_bad_config_one_line(tiny_model, color_data, overrides, needle):
    start = time.monotonic()
    proc = run_vrft("train", str(CONFIG), f"model.path={tiny_model}", f"data.path={color_data}", *overrides)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Ray" not in proc.stderr
    assert time.monotonic() - start < 60  # seconds (on a loaded 2-core box), not a run's start-up


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


def process_tree(pid: int) -> set[int]:
    """A process and everything it started (Ray's daemons and actors are its descendants)."""
    import psutil

    root = psutil.Process(pid)
    return {root.pid} | {p.pid for p in root.children(recursive=True)}


def left_behind(pids: set[int]) -> set[int]:
    """Those still running (a zombie, dead but not yet reaped, is not running)."""
    import psutil

    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_interrupt_stops_actors_and_ray(tiny_model, color_data, tmp_path, signum):
    """SIGINT (Ctrl-C) or SIGTERM (`ray job stop`, a scheduler) mid-run: exit code 130, and the local
    Ray the run started is gone with its actors."""
    import signal

    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "vrft.orchestrator.cli.main", "train", str(CONFIG),
                             f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=500",
                             "rollout.num_workers=1", "verifier.num_actors=1", "learner.world_size=1",
                             "logging.wandb=false", "--run-dir", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            # a suite started in the background (`make test &`) inherits SIGINT ignored,
                            # as POSIX shells do for background jobs, and Python then never raises
                            # KeyboardInterrupt: the run here must get Ctrl-C as a terminal gives it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and '"step"' in metrics.read_text():
            break
        time.sleep(1)
    assert proc.poll() is None, proc.stdout.read()
    started = process_tree(proc.pid) - {proc.pid}
    proc.send_signal(getattr(signal, signum))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    time.sleep(2)
    assert not left_behind(started), f"left behind: {left_behind(started)}"
