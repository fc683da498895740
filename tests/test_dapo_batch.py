"""DAPO in the orchestrator's batch building (pure: no Ray): dynamic sampling keeps exactly the
groups whose rewards differ (and at most the batch's worth of them), the overlong penalty enters
the rewards, and each sample carries its finish reason and reward for the learner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from orchestrator.config import load_config
from orchestrator.data import PromptItem
from orchestrator.step import build_batch
from rollout.engine import Completion
from rollout.inputs import PromptInputs

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"
MAX_NEW = 16


def make(rewards_per_group: list[list[float]], lengths: list[list[int]] | None = None):
    items, groups, scores = [], [], {}
    for i, rewards in enumerate(rewards_per_group):
        items.append(PromptItem(uid=str(i), inputs=PromptInputs(input_ids=[1, 2, 3]), ground_truth={},
                                task=None, cot=None))
        group = []
        for j, r in enumerate(rewards):
            n = lengths[i][j] if lengths else 4
            group.append(Completion(prompt_index=i, sample_index=j, text="", token_ids=[7] * n,
                                    logprobs=[-1.0] * n, finish_reason="length" if n >= MAX_NEW else "stop",
                                    policy_version=0))
            scores[f"{i}:{j}"] = {"total": r}
        groups.append(group)
    return items, groups, scores


def config(*overrides: str):
    return load_config(CONFIG, ["model.path=x", "data.path=y", f"rollout.max_new_tokens={MAX_NEW}", *overrides])


def test_without_dapo_every_group_is_kept():
    items, groups, scores = make([[1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]])
    batch, rewards, metrics = build_batch(config(), items, groups, scores)
    assert len(batch.samples) == 12 and metrics == {}
    assert [s.advantage for s in batch.samples[:4]] == [0.0] * 4  # equal rewards: no signal
    assert torch.equal(rewards, torch.tensor([1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0], dtype=torch.float32))


def test_dynamic_sampling_drops_exactly_the_zero_variance_groups():
    items, groups, scores = make([[1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0], [0.5, 0.5, 0.5, 0.25]])
    batch, rewards, metrics = build_batch(config("learner.dynamic_sampling=true"), items, groups, scores)
    assert sorted({s.group_id for s in batch.samples}) == [1, 3]
    assert metrics["dapo/groups_kept"] == 2 and metrics["dapo/groups_dropped"] == 2
    assert len(rewards) == 16  # every completion's reward is still reported
    # advantages are those of the kept groups alone: group 1 is [-1, 1, -1, 1] / std
    adv = [s.advantage for s in batch.samples if s.group_id == 1]
    assert adv[0] < 0 < adv[1] and sum(adv) == pytest.approx(0.0, abs=1e-6)


def test_dynamic_sampling_keeps_at_most_max_groups_in_order():
    items, groups, scores = make([[0, 1], [1, 1], [1, 0], [0, 1]])
    batch, _, metrics = build_batch(config("learner.dynamic_sampling=true"), items, groups, scores, max_groups=2)
    assert sorted({s.group_id for s in batch.samples}) == [0, 2]
    assert metrics["dapo/groups_kept"] == 2


def test_all_groups_dropped_gives_an_empty_batch():
    items, groups, scores = make([[1, 1], [0, 0]])
    batch, _, metrics = build_batch(config("learner.dynamic_sampling=true"), items, groups, scores)
    assert batch.samples == [] and metrics["dapo/groups_dropped"] == 2


def test_overlong_penalty_enters_the_rewards_and_samples_carry_finish_reasons():
    # max_new_tokens 16, buffer 8: no penalty up to 8 tokens, linear to -0.5 at 16.
    items, groups, scores = make([[1, 1, 1]], lengths=[[8, 12, 16]])
    cfg = config("learner.overlong_buffer=8", "learner.overlong_penalty=0.5")
    batch, rewards, metrics = build_batch(cfg, items, groups, scores)
    assert rewards.tolist() == pytest.approx([1.0, 0.75, 0.5])
    assert [s.reward for s in batch.samples] == pytest.approx([1.0, 0.75, 0.5])
    assert metrics["reward/overlong_penalty"] == pytest.approx(-0.25)
    assert [s.finish_reason for s in batch.samples] == ["stop", "stop", "length"]
    assert [s.truncated for s in batch.samples] == [False, False, True]
    # the penalty alone makes an otherwise equal group informative
    assert batch.samples[0].advantage > 0 > batch.samples[2].advantage


def test_collate_masks_truncated_completions_only_when_asked():
    from learner.batch import Sample, collate

    samples = [Sample(prompt_ids=[1, 2], completion_ids=[3, 4], advantage=1.0, group_id=0, finish_reason=f,
                      weight=w) for f, w in [("stop", 1.0), ("length", 1.0), ("stop", 0.0)]]
    assert collate(samples, 0, mask_truncated=True)["weights"].tolist() == [1.0, 0.0, 0.0]
    assert collate(samples, 0, mask_truncated=False)["weights"].tolist() == [1.0, 1.0, 0.0]
