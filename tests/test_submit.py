"""`ray job submit` end to end: a real local head (`ray start --head` on 127.0.0.1, token
authentication on), deploy/submit.sh submitting `vrft train` on the tiny config, the job's logs, its
exit status and its run folder; a run that does not fit the cluster fails in one line in the job's
logs. The head runs in a process group of its own and is stopped by signalling that group (never
`ray stop`, which would stop every Ray on the machine)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
CONFIG = "configs/local/test_cpu.yaml"
BIN = Path(sys.executable).parent
# One engine, one verifier, one learner rank: 3 logical CPUs, exactly what the head gets.
LEAN = ["run.steps=1", "rollout.num_workers=1", "verifier.num_actors=1", "learner.world_size=1",
        "learner.zero_stage=0", "logging.wandb=false"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_shortfall_names_what_is_missing():
    from vrft.orchestrator.config.schema import load_config
    from vrft.orchestrator.runtime.placement import cpus_needed, shortfall

    cfg = load_config(REPO / CONFIG, ["learner.num_gpus_per_rank=1", "rollout.num_gpus_per_worker=1"])
    assert cpus_needed(cfg) == 6
    line = shortfall(cfg, {"CPU": 64.0, "GPU": 2.0})
    assert line == "needs 4 GPUs (2 learner ranks x 1, 2 engines x 1 (separate)), cluster has 2"
    assert shortfall(cfg, {"CPU": 6.0, "GPU": 4.0}) is None
    assert "needs 6 CPUs" in shortfall(cfg, {"CPU": 5.0, "GPU": 4.0})


@pytest.fixture
def ray_head(tmp_path):
    """A head on 127.0.0.1 with 3 CPUs; yields its dashboard address; everything it started is
    stopped after the test, found by its own temp dir."""
    gcs, dash, agent, grpc, metrics, client, node, obj, renv = _free_ports(9)
    temp = tempfile.mkdtemp(prefix="vrft-ray-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
           "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--num-cpus=3", "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent}",
         f"--dashboard-agent-grpc-port={grpc}", f"--metrics-export-port={metrics}",
         f"--ray-client-server-port={client}", f"--node-manager-port={node}",
         f"--object-manager-port={obj}", f"--runtime-env-agent-port={renv}", f"--temp-dir={temp}",
         "--disable-usage-stats"],
        env=env, cwd=tmp_path, stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            if subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env,
                              capture_output=True).returncode == 0:
                break
            time.sleep(2)
        else:
            pytest.fail("the head's job API did not come up: " + (tmp_path / "head.log").read_text()[-3000:])
        yield address, env
    finally:
        _stop(head, temp)


def _stop(head: subprocess.Popen, temp: str) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            break
        try:
            head.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # Anything of this head that left its process group (job drivers, workers): by its temp dir.
    left = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if temp.encode() in cmd:
            left.append(int(pid))
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    shutil.rmtree(temp, ignore_errors=True)
    assert not left, f"processes of the head survived its stop: {left}"


def _submit(address, env, submission_id, *args, runs: Path) -> subprocess.CompletedProcess:
    env = {**env, "RAY_ADDRESS": address, "VRFT_SUBMISSION_ID": submission_id, "VRFT_RUNS": str(runs)}
    return subprocess.run(["bash", str(REPO / "deploy" / "submit.sh"), CONFIG, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def _job(env, address, *args) -> str:
    return subprocess.run([str(BIN / "ray"), "job", *args, "--address", address], env=env,
                          capture_output=True, text=True, timeout=120).stdout


def test_ray_job_submit_runs_and_fails_cleanly(ray_head, tiny_model, color_data, tmp_path):
    address, env = ray_head
    paths = [f"model.path={tiny_model}", f"data.path={color_data}"]
    run_dir = tmp_path / "job-run"
    done = _submit(address, env, "vrft-ok", *paths, *LEAN, "--run-dir", str(run_dir), runs=tmp_path / "runs")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "succeeded" in _job(env, address, "status", "vrft-ok").lower()
    logs = _job(env, address, "logs", "vrft-ok")
    # an ordinary run's summary line: the colour task's accuracy, named so, and no demo label
    assert "summary: accuracy_first20=" in logs and "DEMO" not in logs, logs[-3000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "step" in r and not r.get("summary")] == [1]
    assert (run_dir / "checkpoints" / "latest").read_text() == "step_000001"

    # Two learner ranks need 4 CPUs; the head has 3: the job fails at once, saying so in one line.
    failed = _submit(address, env, "vrft-too-big", *paths, *LEAN, "learner.world_size=2",
                     runs=tmp_path / "runs")
    assert failed.returncode == 1, (failed.stdout + failed.stderr)[-4000:]
    assert "failed" in _job(env, address, "status", "vrft-too-big").lower()
    logs = _job(env, address, "logs", "vrft-too-big")
    line = "vrft: error: the Ray cluster cannot hold this run: needs 4 CPUs (2 learner ranks x 1, " \
           "1 engines x 1, 1 verifiers x 1), cluster has 3"
    assert line in logs, logs[-3000:]
    assert not list((tmp_path / "runs").glob("*/checkpoints")), "no run may start on a cluster too small"


def test_joined_cluster_waits_for_autoscaling_then_gives_up(monkeypatch):
    """run.cluster_wait_s: a cluster that grows in time is used; one that does not fails in one line."""
    import ray

    from vrft.orchestrator.config.schema import load_config
    from vrft.orchestrator.runtime import cluster

    cfg = load_config(REPO / CONFIG, [*LEAN, "run.cluster_wait_s=0.5"])
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    growing = iter([{"CPU": 1.0}, {"CPU": 2.0}, {"CPU": 3.0}])
    monkeypatch.setattr(ray, "cluster_resources", lambda: next(growing))
    cluster.wait_for_cluster(cfg, poll_s=0.01)  # 3 CPUs arrive on the third look

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    with pytest.raises(SystemExit) as err:
        cluster.wait_for_cluster(cfg, poll_s=0.05)
    assert str(err.value) == ("vrft: error: the Ray cluster cannot hold this run after waiting 0.5s "
                              "(run.cluster_wait_s): needs 3 CPUs (1 learner ranks x 1, 1 engines x 1, "
                              "1 verifiers x 1), cluster has 2")


def test_ray_starts_while_the_loop_imports(monkeypatch):
    """`vrft train`'s overlap: Ray's start on the calling thread, the import on another; an import
    error is raised to the caller after stopping a Ray this call started, never swallowed."""
    import sys

    import ray

    from vrft.orchestrator.config.schema import load_config
    from vrft.orchestrator.runtime import cluster

    cfg = load_config(REPO / CONFIG, LEAN)
    stopped = []
    monkeypatch.setattr(ray, "shutdown", lambda: stopped.append(True))
    monkeypatch.setattr(cluster, "start_ray", lambda _cfg: True)
    monkeypatch.delitem(sys.modules, "vrft.orchestrator.runtime.layout", raising=False)
    assert cluster.start_ray_while_importing(cfg, "vrft.orchestrator.runtime.layout") is True
    assert "vrft.orchestrator.runtime.layout" in sys.modules and not stopped
    with pytest.raises(ModuleNotFoundError, match="no_such_vrft_module"):
        cluster.start_ray_while_importing(cfg, "no_such_vrft_module")
    assert stopped == [True]
    monkeypatch.setattr(cluster, "start_ray", lambda _cfg: False)  # a Ray someone else started
    with pytest.raises(ModuleNotFoundError):
        cluster.start_ray_while_importing(cfg, "no_such_vrft_module")
    assert stopped == [True]
