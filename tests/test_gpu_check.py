"""The prepared GPU check (benchmarks/gpu_check.sh + gpu_check.py) where no GPU is: its argument
handling, and its Python side's CPU dry path (transformers engine, gloo, fp32) end to end, so only
the CUDA calls are left unrun until a GPU is lent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks import gpu_check

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "gpu_check.sh"


def sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_script_help_and_bad_arguments():
    out = sh("--help")
    assert out.returncode == 0 and "--wheels DIR" in out.stdout and "--dry-run" in out.stdout
    assert "set -euo" not in out.stdout
    for bad in (["--bogus"], ["--wheels", "/nonexistent/wheels"], ["--limit-s", "soon"], ["--venv"]):
        out = sh(*bad)
        assert out.returncode != 0, bad
        assert "gpu_check.sh" in out.stderr or "needs" in out.stderr, bad


def test_script_refuses_a_missing_python():
    out = sh("--venv", "/nonexistent/venv", "--dry-run")
    assert out.returncode == 2 and "no Python" in out.stderr


def test_python_side_arguments():
    args = gpu_check.parse([])
    assert args.device == "cuda" and args.only == list(gpu_check.SECTIONS)
    assert gpu_check.parse(["--only", "sync", "sleep"]).only == ["sync", "sleep"]
    with pytest.raises(SystemExit):
        gpu_check.parse(["--only", "nothing"])
    for name in gpu_check.SECTIONS:
        assert callable(getattr(gpu_check, f"section_{name}"))


def test_dry_path_runs_every_section_on_cpu(ray_cluster, tmp_path, capsys):
    rc = gpu_check.main(["--device", "cpu", "--size", "tiny", "--prompts", "2", "--n", "2",
                         "--max-new-tokens", "8", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in gpu_check.SECTIONS:
        assert f"GPUCHECK {name} " in out and f"GPUCHECK {name} FAIL" not in out
    diff = float(next(ln for ln in out.splitlines() if ln.startswith("BENCH gpu_sync_logprob_max_abs_diff")).split()[2])
    assert diff < 1e-5  # fp32 over gloo: the same exactness bound as tests/test_weight_sync.py
