"""A micro-batch without images still runs the vision tower (`vrft.learner.model.vision_tower_in_graph`),
contributing exactly 0: the log-probs are bit for bit the plain forward's and every vision parameter
gets a zero gradient. So data-parallel ranks with text-only and image micro-batches run the same
collectives: without it, 2 ZeRO-3 (or ZeRO-1/2) ranks on gloo abort at the first backward (a hang on
NCCL, ms-swift #3213)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vrft.learner import LearnerConfig, LearnerGroup, Sample, TrainBatch
from vrft.learner.algorithms import token_logprobs_from_logits
from vrft.learner.batch import collate
from vrft.learner.lora import is_vision_param
from vrft.learner.model import load_model, sequence_logprobs
from vrft.learner.shared_prompt import shared_prompt_logprobs
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor
from vrft.testing.tiny_model import ARCHS, make_tiny_model


def _text_batch(processor) -> dict[str, torch.Tensor]:
    prompt = build_prompt_inputs(processor, "What is two plus two?", [])
    answer = processor.tokenizer("<think>four</think><answer>4</answer>", add_special_tokens=False)["input_ids"]
    return collate([Sample(prompt_ids=prompt.input_ids, completion_ids=answer + [2]),
                    Sample(prompt_ids=prompt.input_ids, completion_ids=answer[:3] + [2])],
                   processor.tokenizer.pad_token_id)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("arch", ARCHS)
def test_text_only_batch_gives_every_vision_parameter_a_zero_gradient(arch, tmp_path):
    path = make_tiny_model(tmp_path / arch, arch=arch, size="tiny")
    processor = load_processor(str(path))
    model = load_model(str(path), "float32")
    batch = _text_batch(processor)
    mask = batch["loss_mask"]

    plain = model(**{k: batch[k] for k in ("input_ids", "attention_mask")}, use_cache=False).logits
    expected = token_logprobs_from_logits(plain[:, :-1], batch["input_ids"][:, 1:])
    (expected * mask).sum().backward()
    without = _grads(model)
    assert all(g is None for n, g in without.items() if is_vision_param(n))  # the tower did not run
    model.zero_grad(set_to_none=True)

    logp, _ = sequence_logprobs(model, batch)
    assert torch.equal(logp * mask, expected.detach() * mask)
    (logp * mask).sum().backward()
    with_dummy = _grads(model)
    vision = [n for n in with_dummy if is_vision_param(n)]
    assert vision and all(with_dummy[n] is not None and not with_dummy[n].any() for n in vision)
    for name, grad in without.items():
        if not is_vision_param(name):
            assert torch.equal(with_dummy[name], grad), name
    model.zero_grad(set_to_none=True)

    shared, _ = shared_prompt_logprobs(model, batch)  # the shared-prompt path: the tower once too
    (shared * mask).sum().backward()
    assert all(p.grad is not None and not p.grad.any() for n, p in model.named_parameters() if is_vision_param(n))


def _samples(processor) -> list[Sample]:
    """Two image samples (one group) and two text-only ones (another): micro-batches of two put the
    image pair on one rank and the text pair on the other (LearnerGroup's assignment is by length)."""
    image = build_prompt_inputs(processor, "What color is the shape?", [Image.new("RGB", (56, 56), (200, 30, 30))])
    text = build_prompt_inputs(processor, "What is two plus two?", [])
    ids = processor.tokenizer("<think>red</think><answer>red</answer>", add_special_tokens=False)["input_ids"]

    def sample(prompt, completion, reward, group):
        return Sample(prompt_ids=prompt.input_ids, completion_ids=completion + [2], reward=reward, group_id=group,
                      pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw,
                      prompt_mm_token_type_ids=prompt.mm_token_type_ids)

    return [sample(image, ids, 1.0, 0), sample(image, ids[:3], 0.0, 0),
            sample(text, ids[:4], 1.0, 1), sample(text, ids[:2], 0.0, 1)]


def test_zero3_ranks_with_text_only_and_image_micro_batches_step_together(ray_cluster, tiny_model):
    """2 ZeRO-3 ranks, one with the image micro-batch, one with the text-only one: the step completes
    (a regression aborts on gloo at once, or waits at most collective_timeout_s), and the policy it
    makes equals one rank's step on a single micro-batch holding all four samples (images present:
    no dummy pass), so the dummy pass added nothing."""
    processor = load_processor(tiny_model)
    samples = _samples(processor)
    pad = processor.tokenizer.pad_token_id
    after, norms = {}, {}
    for world_size, micro in ((2, 2), (1, 4)):
        cfg = LearnerConfig(world_size=world_size, zero_stage=3, lr=1e-2, beta=0.0, torch_threads=1,
                            micro_batch_size=micro, collective_timeout_s=60)
        group = LearnerGroup(tiny_model, cfg, total_steps=1, pad_id=pad)
        try:
            metrics = group.train_step(TrainBatch(list(samples)))
            assert metrics["micro_batches"] == 4 // micro and metrics["skipped_nonfinite"] == 0
            norms[world_size] = metrics["grad_norm"]
            after[world_size] = [group.logprobs([s])[0] for s in (samples[0], samples[2])]
        finally:
            group.shutdown()
    assert abs(norms[2] - norms[1]) < 1e-6 * norms[1]  # the same gradient (measured: ~1e-9 apart)
    for two, one in zip(after[2], after[1], strict=True):  # the step moves them by ~0.9; ~1e-6 apart
        assert max(abs(a - b) for a, b in zip(two, one, strict=True)) < 1e-4
