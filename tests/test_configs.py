"""Every shipped experiment config validates against the run config (no Ray, no model, no data:
dataset and model paths are checked by `vrft train`'s preflight, not by `load_config`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.runtime.placement import check_placement
from vrft.verifiers import CompositeReward

# Bases (`_*.yaml`) are completed by the configs that extend them; every other file is a config.
CONFIGS = sorted(p for p in (Path(__file__).parent.parent / "configs").rglob("*.yaml") if not p.name.startswith("_"))
SHIPPED = {"visual_rft/coco_8cls_4shot_2b.yaml",  # deploy/rayjob.yaml and deploy/submit.sh
           "reason_rft/counting_2b.yaml"}          # deploy/slurm.sbatch


def test_the_configs_deploy_names_exist():
    names = {str(p.relative_to(p.parents[1])) for p in CONFIGS}
    assert SHIPPED <= names
    assert any(n.startswith("visual_rft/") and n not in SHIPPED for n in names)  # a classification one


@pytest.mark.parametrize("path", CONFIGS, ids=[f"{p.parent.name}/{p.name}" for p in CONFIGS])
def test_config_validates(path):
    cfg = load_config(path)
    check_placement(cfg)
    if isinstance(cfg.rewards, dict):
        for specs in cfg.rewards.values():
            CompositeReward(list(specs))
    elif cfg.rewards:
        CompositeReward(list(cfg.rewards))
    elif cfg.data.task is not None:
        from vrft.orchestrator.core.tasks import default_rewards

        assert default_rewards(cfg.data.task)


def test_reason_rft_config_runs_both_phases():
    cfg = load_config(Path(__file__).parent.parent / "configs" / "reason_rft" / "counting_2b.yaml")
    assert cfg.sft.steps > 0 and cfg.run.steps > 0
    assert cfg.sft.lr == 1e-5 and cfg.sft.weight_decay == 0.1 and cfg.sft.lr_schedule == "cosine"
    assert cfg.rollout.n == 8 and cfg.learner.beta == 0.04 and cfg.learner.zero_stage == 3
