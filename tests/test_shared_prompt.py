"""Shared prompts (learner/shared_prompt.py) against the plain forward, on every model family:

- the same per-token log-probs, entropies and gradients for a shuffled batch mixing groups of
  several rows, a group of one, a two-image prompt, a prompt without images and completions of
  different lengths (one of a single token);
- rows are grouped by equal prompts (tokens and pixels), not by object identity, and the same tokens
  with another image are another prompt;
- the check that guards it can fail: the completion placed at the wrong rotary positions is refused;
- a DeepSpeed learner rank trains to the same loss, KL and gradient norm with and without it.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import ray
import torch

import vrft.learner.shared_prompt as shared
from vrft.learner import LearnerConfig, LearnerGroup, Sample
from vrft.learner.batch import collate, prefix_rows
from vrft.learner.model import load_model, sequence_logprobs
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor, vision_special_token_ids
from vrft.testing.synthetic import sample_task
from vrft.testing.tiny_model import ARCHS, make_tiny_model


def _batch_samples(model_path: str, seed: int = 0) -> tuple[list[Sample], int]:
    processor = load_processor(model_path)
    tok = processor.tokenizer
    special = set(tok.all_special_ids) | set(vision_special_token_ids(tok))
    vocab = [i for i in range(tok.vocab_size) if i not in special]
    rng = random.Random(seed)
    tasks = [sample_task("color", rng) for _ in range(3)]
    prompts = [build_prompt_inputs(processor, tasks[0].problem, [tasks[0].image]),
               build_prompt_inputs(processor, tasks[1].problem, [tasks[1].image, tasks[2].image]),
               build_prompt_inputs(processor, "What colour is the sky?", []),
               build_prompt_inputs(processor, tasks[2].problem, [tasks[2].image])]
    samples = []
    for group, (prompt, size) in enumerate(zip(prompts, (3, 3, 2, 1), strict=True)):
        for g in range(size):
            length = 1 if (group, g) == (0, 1) else rng.randint(2, 12)
            samples.append(Sample(prompt_ids=prompt.input_ids, completion_ids=rng.choices(vocab, k=length),
                                  pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw,
                                  prompt_mm_token_type_ids=prompt.mm_token_type_ids, group_id=group,
                                  advantage=rng.uniform(-1, 1), reward=0.0))
    rng.shuffle(samples)
    return samples, tok.pad_token_id


@pytest.fixture(scope="module", params=ARCHS)
def family_model(request, tmp_path_factory) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp(request.param) / "m", arch=request.param, size="tiny"))


def _grads(model, logp: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    (logp * mask).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_shared_prompts_equal_the_plain_forward(family_model):
    samples, pad = _batch_samples(family_model)
    batch = collate(samples, pad)
    assert len(shared.prompt_groups(batch)) == 4 and shared.worth_sharing(batch)
    model = load_model(family_model, "float32").eval()
    mask = batch["loss_mask"]
    with torch.no_grad():
        plain, plain_ent = sequence_logprobs(model, batch, 0.7, "value")
        ours, ours_ent = shared.shared_prompt_logprobs(model, batch, 0.7, "value")
    assert ours.shape == plain.shape
    assert float(((ours - plain).abs() * mask).max()) < 1e-5
    assert float(((ours_ent - plain_ent).abs() * mask).max()) < 1e-5
    prompt_positions = torch.zeros_like(mask, dtype=torch.bool)
    for row, p in enumerate(batch["prompt_lens"].tolist()):
        prompt_positions[row, :p - 1] = True
    assert float(ours[prompt_positions].abs().max()) == 0.0  # the prompt gets no logits at all
    model.train()
    want = _grads(model, sequence_logprobs(model, batch)[0], mask)
    got = _grads(model, shared.shared_prompt_logprobs(model, batch)[0], mask)
    assert want.keys() == got.keys() and any("visual" in n for n in got)  # the image tower gets its gradient
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-4, atol=1e-6), name


def test_the_check_refuses_a_completion_at_the_wrong_positions(family_model, monkeypatch):
    samples, pad = _batch_samples(family_model)
    batch = collate(samples, pad)
    model = load_model(family_model, "float32").eval()
    with torch.no_grad():
        plain = sequence_logprobs(model, batch)[0]
        assert shared.agrees(shared.shared_prompt_logprobs(model, batch)[0], plain, batch["loss_mask"],
                             torch.float32) < 1e-5
        # Continue every prompt one position too far on: what forgetting the prompt's offset does.
        monkeypatch.setattr(shared, "_continuation_positions",
                            lambda m, p, *rest, real=shared._continuation_positions: real(m, p + 1, *rest))
        with pytest.raises(ValueError, match="differ from the plain forward"):
            shared.agrees(shared.shared_prompt_logprobs(model, batch)[0], plain, batch["loss_mask"], torch.float32)


def test_rows_share_a_prompt_by_value_not_by_object():
    pixels = torch.rand(4, 8)
    a = Sample(prompt_ids=[1, 2, 3], completion_ids=[4], pixel_values=pixels, image_grid_thw=torch.tensor([[1, 2, 2]]))
    same_by_value = replace(a, pixel_values=pixels.clone(), completion_ids=[5, 6])
    other_image = replace(a, pixel_values=pixels + 1)
    other_tokens = replace(a, prompt_ids=[1, 2, 9])
    assert prefix_rows([a, other_image, same_by_value, other_tokens, a]) == [0, 1, 0, 3, 0]
    assert prefix_rows([Sample(prompt_ids=[1], completion_ids=[2])] * 2) == [0, 0]


@pytest.mark.usefixtures("ray_cluster")
def test_a_learner_rank_trains_the_same_with_shared_prompts(tiny_model):
    samples, pad = _batch_samples(tiny_model, seed=1)
    norms = {"tokens": float(sum(len(s.completion_ids) for s in samples)), "seqs": float(len(samples)),
             "max_len": 12.0}
    results = {}
    for share in (False, True):
        cfg = LearnerConfig(world_size=1, zero_stage=0, lr=1e-3, beta=0.04, torch_threads=1,
                            micro_batch_size=len(samples), share_prompts=share)
        group = LearnerGroup(tiny_model, cfg, total_steps=4, pad_id=pad)
        try:
            results[share] = [ray.get(group.ranks[0].train_step.remote([samples], norms, pad)) for _ in range(2)]
        finally:
            group.shutdown()
    for plain, ours in zip(results[False], results[True], strict=True):
        for key in ("loss", "kl", "grad_norm"):
            assert ours[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-7), key
    assert results[True][1]["kl"] > 0  # the second step moved away from the reference: a real comparison


def test_collate_marks_prompts_and_image_rows(tiny_model):
    samples, pad = _batch_samples(tiny_model)
    batch = collate(samples, pad)
    assert batch["prompt_lens"].tolist() == [len(s.prompt_ids) for s in samples]
    assert batch["pixel_counts"].sum() == len(batch["pixel_values"])
    assert batch["grid_counts"].tolist() == [0 if s.image_grid_thw is None else len(s.image_grid_thw)
                                             for s in samples]
