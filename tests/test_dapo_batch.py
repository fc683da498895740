"""DAPO in the orchestrator's batch building (pure: no Ray): dynamic sampling keeps exactly the
groups whose rewards differ (and at most the batch's worth of them), the overlong penalty enters
the rewards, and each sample carries its finish reason and reward for the learner."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrft.learner.config import LearnerConfig
from vrft.learner.group import batch_advantages
from vrft.orchestrator.config.schema import ConfigError, load_config
from vrft.orchestrator.core.records import PromptGroup, PromptItem, ScoredCompletion
from vrft.orchestrator.train.step import build_batch, record_advantages, select_groups, shape_rewards
from vrft.rollout.engine import Completion
from vrft.rollout.inputs import PromptInputs

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"
MAX_NEW = 16


def make(rewards_per_group: list[list[float]], lengths: list[list[int]] | None = None) -> list[PromptGroup]:
    groups = []
    for i, rewards in enumerate(rewards_per_group):
        item = PromptItem(row_id=str(i), inputs=PromptInputs(input_ids=[1, 2, 3]), ground_truth={})
        completions = []
        for j, r in enumerate(rewards):
            n = lengths[i][j] if lengths else 4
            completion = Completion(sample_index=j, text="", token_ids=[7] * n, logprobs=[-1.0] * n,
                                    finish_reason="length" if n >= MAX_NEW else "stop", policy_version=0)
            completions.append(ScoredCompletion(completion, scores={"total": r}))
        groups.append(PromptGroup(item, completions))
    return groups


def config(*overrides: str):
    return load_config(CONFIG, ["model.path=x", "data.path=y", f"rollout.max_new_tokens={MAX_NEW}", *overrides])


def batch_of(cfg, groups, max_groups=None):
    """What grpo_step does before learning, and the learner's advantages read back."""
    shape_rewards(cfg, groups)
    kept = select_groups(cfg, groups, max_groups)
    batch = build_batch(cfg, groups)
    if batch.samples:
        for s, a in zip(batch.samples, batch_advantages(batch.samples, cfg.learner), strict=True):
            s.advantage = a
    record_advantages(groups, batch)
    return batch, kept


def test_without_dapo_every_group_is_kept():
    groups = make([[1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]])
    batch, kept = batch_of(config(), groups)
    assert len(batch.samples) == 12 and kept == 3
    assert [c.advantage for c in groups[0].completions] == [0.0] * 4  # equal rewards: no signal
    assert [r for g in groups for r in g.rewards] == [1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0]
    assert [s.group_id for s in batch.samples] == [0] * 4 + [1] * 4 + [2] * 4


def test_dynamic_sampling_drops_exactly_the_zero_variance_groups():
    groups = make([[1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0], [0.5, 0.5, 0.5, 0.25]])
    batch, kept = batch_of(config("dapo.dynamic_sampling=true"), groups)
    assert sorted({s.group_id for s in batch.samples}) == [1, 3] and kept == 2
    assert [g.kept for g in groups] == [False, True, False, True]
    # advantages are those of the kept groups alone: group 1 is [-1, 1, -1, 1] / std
    adv = [c.advantage for c in groups[1].completions]
    assert adv[0] < 0 < adv[1] and sum(adv) == pytest.approx(0.0, abs=1e-6)
    assert [c.advantage for c in groups[0].completions] == [0.0] * 4  # dropped: never trained


def test_dynamic_sampling_keeps_at_most_max_groups_in_order():
    groups = make([[0, 1], [1, 1], [1, 0], [0, 1]])
    batch, kept = batch_of(config("dapo.dynamic_sampling=true"), groups, max_groups=2)
    assert sorted({s.group_id for s in batch.samples}) == [0, 2] and kept == 2


def test_all_groups_dropped_gives_an_empty_batch():
    groups = make([[1, 1], [0, 0]])
    batch, kept = batch_of(config("dapo.dynamic_sampling=true"), groups)
    assert batch.samples == [] and kept == 0


def test_overlong_penalty_enters_the_rewards_and_samples_carry_finish_reasons():
    # max_new_tokens 16, buffer 8: no penalty up to 8 tokens, linear to -0.5 at 16.
    groups = make([[1, 1, 1]], lengths=[[8, 12, 16]])
    batch, _ = batch_of(config("dapo.overlong_buffer=8", "dapo.overlong_penalty=0.5"), groups)
    assert groups[0].rewards == pytest.approx([1.0, 0.75, 0.5])
    assert [c.scores["total"] for c in groups[0].completions] == [1, 1, 1]  # the verifiers' own scores
    assert [s.reward for s in batch.samples] == pytest.approx([1.0, 0.75, 0.5])
    assert [s.finish_reason for s in batch.samples] == ["stop", "stop", "length"]
    assert [s.truncated for s in batch.samples] == [False, False, True]
    # the penalty alone makes an otherwise equal group informative
    assert batch.samples[0].advantage > 0 > batch.samples[2].advantage


def test_kl_in_the_reward_shapes_the_advantages_in_the_same_function():
    groups = make([[1, 1, 0, 0]])
    cfg = LearnerConfig(kl_in_reward=True, beta=0.5)
    batch, _ = batch_of(config(), groups)
    plain = batch_advantages(batch.samples, cfg)
    # KL sums that undo the reward gap: shaped rewards all equal, so no signal is left
    shaped = batch_advantages(batch.samples, cfg, kl_sums=[2.0, 2.0, 0.0, 0.0])
    assert plain[0] > 0 > plain[2]
    assert shaped == pytest.approx([0.0] * 4, abs=1e-9)


@pytest.mark.parametrize("old,new", [("dynamic_sampling", "dapo.dynamic_sampling"),
                                     ("dynamic_sampling_max_refills", "dapo.max_refills"),
                                     ("overlong_buffer", "dapo.overlong_buffer"),
                                     ("overlong_penalty", "dapo.overlong_penalty")])
def test_old_dapo_keys_name_their_new_place(old, new):
    with pytest.raises(ConfigError, match=f"learner.{old} has moved: set {new} instead"):
        config(f"learner.{old}=1")


def test_collate_masks_truncated_completions_only_when_asked():
    from vrft.learner.batch import Sample, collate

    samples = [Sample(prompt_ids=[1, 2], completion_ids=[3, 4], advantage=1.0, group_id=0, finish_reason=f,
                      weight=w) for f, w in [("stop", 1.0), ("length", 1.0), ("stop", 0.0)]]
    assert collate(samples, 0, mask_truncated=True)["weights"].tolist() == [1.0, 0.0, 0.0]
    assert collate(samples, 0, mask_truncated=False)["weights"].tolist() == [1.0, 1.0, 0.0]
