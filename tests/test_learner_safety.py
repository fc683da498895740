"""A 1-rank DeepSpeed learner on a local Ray cluster, fed bad numbers and bad files:

- a NaN loss skips its update (weights untouched, `skipped_nonfinite` counted) on both paths, the
  client optimizer of ZeRO-0 (checked by us) and DeepSpeed's ZeRO-2 (its own grad-norm check), and
  `max_nonfinite_in_row` skipped updates in a row stop it with a one-line error;
- weights that are not finite are never written as a checkpoint;
- a checkpoint loads back weights-only, and one whose file holds a pickle that would run code is
  refused without running it.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
import ray
import torch

from vrft.learner import LearnerConfig, LearnerGroup, Sample
from vrft.learner.group import RankFailed
from vrft.rollout.processor import load_processor


@pytest.fixture(scope="module")
def pad_id(tiny_model) -> int:
    return load_processor(tiny_model).tokenizer.pad_token_id


class _Evil:
    """Unpickling this runs `touch marker`: what a hostile checkpoint file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _samples(advantage: float, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    return [Sample(prompt_ids=[rng.randrange(10, 300) for _ in range(6)],
                   completion_ids=[rng.randrange(10, 300) for _ in range(5)],
                   advantage=advantage * (-1.0) ** i, group_id=i // 2) for i in range(4)]


def _train(group: LearnerGroup, samples: list[Sample]) -> dict[str, float]:
    norms = {"tokens": float(sum(len(s.completion_ids) for s in samples)), "seqs": float(len(samples)),
             "max_len": 5.0}
    return ray.get(group.ranks[0].train_step.remote([samples], norms, group.pad_id))


def _learner(model: str, pad_id: int, zero_stage: int) -> LearnerGroup:
    cfg = LearnerConfig(world_size=1, zero_stage=zero_stage, lr=1e-2, beta=0.0, torch_threads=1,
                        max_nonfinite_in_row=2)
    return LearnerGroup(model, cfg, total_steps=8, pad_id=pad_id)


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_nonfinite_loss_skips_the_update_and_too_many_in_a_row_stop(ray_cluster, tiny_model, pad_id,
                                                                    zero_stage):
    group = _learner(tiny_model, pad_id, zero_stage)
    probe = _samples(0.0, seed=1)
    try:
        before = group.logprobs(probe)
        bad = _train(group, _samples(float("nan")))
        assert bad["skipped_nonfinite"] == 1.0
        assert group.logprobs(probe) == before  # not one weight moved

        good = _train(group, _samples(1.0))  # a finite update in between resets the count
        assert good["skipped_nonfinite"] == 0.0
        assert group.logprobs(probe) != before
        assert _train(group, _samples(float("inf")))["skipped_nonfinite"] == 1.0
        with pytest.raises(ray.exceptions.RayTaskError) as err:
            _train(group, _samples(float("nan")))
        line = str(err.value.cause)
        assert "2 updates in a row had a non-finite loss" in line and "\n" not in line
    finally:
        group.shutdown()


def test_weights_that_are_not_finite_are_never_saved(ray_cluster, tiny_model, pad_id, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    state = load_file(broken / "model.safetensors")
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name][0] = float("nan")
    save_file(state, broken / "model.safetensors", metadata={"format": "pt"})

    group = _learner(str(broken), pad_id, zero_stage=2)
    try:
        with pytest.raises(RankFailed, match="not finite; refusing to write a checkpoint"):
            group.save(str(tmp_path / "ckpt"), "state")
    finally:
        group.shutdown()
    assert not (tmp_path / "ckpt" / "state").exists()


def test_checkpoint_loads_weights_only_and_a_pickle_is_refused(ray_cluster, tiny_model, pad_id, tmp_path):
    group = _learner(tiny_model, pad_id, zero_stage=2)
    probe = _samples(0.0, seed=1)
    ckpt = tmp_path / "ckpt"
    marker = tmp_path / "pwned"
    try:
        _train(group, _samples(1.0))
        saved = group.logprobs(probe)
        group.save(str(ckpt), "state")
        assert (ckpt / "state" / "rng_rank0.json").is_file() and not list(ckpt.rglob("rng*.pt"))
        _train(group, _samples(1.0))
        assert group.logprobs(probe) != saved
        group.load(str(ckpt), "state")  # model, ZeRO-2 optimizer partitions, scheduler: weights-only
        assert group.logprobs(probe) == saved

        model_file = ckpt / "state" / "mp_rank_00_model_states.pt"
        torch.save({"module": _Evil(marker)}, model_file)
        with pytest.raises(RankFailed, match="refusing to load"):
            group.load(str(ckpt), "state")
    finally:
        group.shutdown()
    assert not marker.exists()
