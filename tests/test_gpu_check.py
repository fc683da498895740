"""The prepared one-GPU check (benchmarks/gpu_check.sh, gpu_carry.py, gpu_check.py) where no GPU
is: argument handling, the carry limit, and the dry path end to end (a carried wheel installed into
the scratch folder, then every section on CPU: transformers engine, DeepSpeed ZeRO-2/3, the weight
transfer over gloo, the shared-prompt forward), so only the CUDA calls are left unrun. No Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks import gpu_check

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "gpu_check.sh"


def sh(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def probe_wheel(folder: Path, name: str = "vrft_probe", version: str = "1.0") -> Path:
    """A minimal pure wheel: one module and its metadata."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", f"{name}/__init__.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")
    return path


def test_script_help_and_bad_arguments():
    out = sh("--help")
    assert out.returncode == 0 and "--wheels DIR" in out.stdout and "--dry-run" in out.stdout
    assert "set -euo" not in out.stdout
    for bad in (["--bogus"], ["--limit-s", "soon"], ["--limit-s", "361"], ["--python"],
                ["--python", "/nonexistent/python3", "--dry-run"]):
        out = sh(*bad)
        assert out.returncode != 0, (bad, out.stderr)
        assert "gpu_check.sh" in out.stderr or "needs" in out.stderr, bad


def test_device_run_without_wheels_refuses(tmp_path):
    out = sh("--wheels", str(tmp_path), "--python", sys.executable)
    assert out.returncode == 2 and "make gpu-wheels" in out.stderr


def test_dry_run_refuses_a_carry_over_64_mib(tmp_path):
    with open(tmp_path / "big-1.0-py3-none-any.whl", "wb") as f:
        f.truncate(65 * 2**20)  # sparse: the size counts, not the disk
    out = sh("--dry-run", "--python", sys.executable, "--wheels", str(tmp_path))
    assert out.returncode == 3, out.stderr
    assert "OVER THE LIMIT" in out.stdout and "GPUCHECK" not in out.stdout


def test_python_side_arguments():
    args = gpu_check.parse([])
    assert (args.device, args.size, args.backend) == ("cuda", "small", "ipc")
    assert args.only == list(gpu_check.SECTIONS) and args.families == list(gpu_check.FAMILIES)
    dry = gpu_check.parse(["--device", "cpu", "--only", "transfer", "zero2"])
    assert (dry.size, dry.backend, dry.only) == ("tiny", "gloo", ["transfer", "zero2"])
    with pytest.raises(SystemExit):
        gpu_check.parse(["--only", "nothing"])
    for name in gpu_check.SECTIONS:
        assert callable(getattr(gpu_check, f"section_{name}"))


def test_dry_run_installs_what_is_missing_and_passes_every_section(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    probe_wheel(wheels)
    (wheels / "packaging-0.1-py3-none-any.whl").write_bytes(b"never opened")  # older than ours: skipped
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--python", sys.executable, "--wheels", str(wheels),
                          "--", "--families", "qwen2_vl", "--workdir", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "carry: total" in out.stdout
    assert "installing 1 wheels" in out.stderr and "vrft_probe-1.0-py3-none-any.whl" in out.stderr
    assert not list(tmp_path.glob("vrft-gpu-site.*"))  # the scratch folder is removed
    for name in gpu_check.SECTIONS:
        assert f"GPUCHECK {name} ok" in out.stdout, name
    bench = {ln.split()[1]: float(ln.split()[2]) for ln in out.stdout.splitlines() if ln.startswith("BENCH ")}
    assert bench["gpu_transfer_logprob_max_abs_diff_v2"] < 1e-5  # fp32 over gloo: exact
    assert bench["gpu_transfer_logprob_diff_before_v2"] > 1e-2  # the update did move the policy
    assert bench["gpu_shared_prompt_max_abs_diff_qwen2_vl"] < 1e-4
