"""Placement mistakes are config errors found before Ray starts, each named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.placement import check_placement

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


@pytest.mark.parametrize("overrides, needle", [
    (["rollout.placement=colocated", "rollout.num_workers=1"], "num_workers"),
    (["rollout.placement=colocated", "run.mode=async"], "run.mode=async"),
    (["rollout.placement=colocated", "rollout.engine=vllm", "rollout.tensor_parallel_size=2"], "tensor_parallel_size"),
    (["rollout.placement=colocated", "rollout.engine=vllm"], "cannot sleep"),
])
def test_bad_placement_is_refused(overrides, needle):
    cfg = load_config(CONFIG, ["model.path=m", "data.path=d", *overrides])
    with pytest.raises(ValueError, match=needle) as err:
        check_placement(cfg)
    assert "\n" not in str(err.value)


def test_good_placements_pass():
    for placement in ("separate", "colocated"):
        check_placement(load_config(CONFIG, ["model.path=m", "data.path=d", f"rollout.placement={placement}"]))
