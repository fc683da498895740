"""Shared fixtures: offline assets are made once per test session, in a temporary folder."""

from __future__ import annotations

import os

import pytest

# Nothing may reach a hub during tests, and DeepSpeed must pick its CPU accelerator.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


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
