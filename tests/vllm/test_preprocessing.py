"""vLLM's own image preprocessing for Qwen2-VL / Qwen2.5-VL on CPU (no engine is started): the
multimodal processor vLLM builds from engine arguments, run on the learner's prompts, against the
learner's processor (rollout/processor.py) on images both have to resize.

- With the engine's arguments (rollout/vllm_inputs.multimodal_engine_args: the PIL backend,
  normalised on the host) vLLM gives the learner's pixel values bit for bit.
- With vLLM's own defaults (the checkpoint's processor: transformers' torchvision backend,
  normalised on the device) the prompt tokens and image grids still agree, which the engine checks
  on every prompt; the pixel values do not (measured in docs/measurements.md): why the engine does
  not use them.
"""

from __future__ import annotations

import pytest
import torch

from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor
from vrft.rollout.vllm_engine import vllm_prompt_view
from vrft.rollout.vllm_inputs import multimodal_engine_args


def vllm_preprocess(model_path: str, engine_args: dict, prompt) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """What vLLM's input processing makes of one learner prompt under `engine_args` (the engine's
    own `vllm_prompt_view`): prompt ids with the image placeholders expanded, pixel values as the
    vision tower receives them, image_grid_thw."""
    from vllm.config import ModelConfig, VllmConfig

    config = ModelConfig(model=model_path, dtype="float32", **engine_args)
    view = vllm_prompt_view(VllmConfig(model_config=config), prompt, config.hf_config.image_token_id)
    assert view["image_tokens"] == prompt.input_ids.count(config.hf_config.image_token_id)
    return view["input_ids"], view["pixel_values"], view["image_grid_thw"]


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def learner_side(request, small_vlm, resized_images):
    path = small_vlm(request.param)
    processor = load_processor(path)
    prompts = [build_prompt_inputs(processor, "What shapes are in the image?", [image]) for image in resized_images]
    assert all(p.image_grid_thw[0, 1] * 14 != image.height for p, image in zip(prompts, resized_images, strict=True))
    return path, prompts


def test_the_engines_preprocessing_gives_the_learners_pixels_exactly(learner_side, pixel_bounds):
    path, prompts = learner_side
    engine_args = multimodal_engine_args(*pixel_bounds(path), limit_images=1)
    for prompt in prompts:
        ids, pixels, grid = vllm_preprocess(path, engine_args, prompt)
        assert ids == prompt.input_ids
        assert torch.equal(grid, prompt.image_grid_thw)
        assert pixels.dtype == prompt.pixel_values.dtype
        assert torch.equal(pixels, prompt.pixel_values)


def test_vllms_default_preprocessing_keeps_tokens_not_pixels(learner_side, pixel_bounds):
    path, prompts = learner_side
    lo, hi = pixel_bounds(path)
    engine_args = {"mm_processor_kwargs": {"min_pixels": lo, "max_pixels": hi}}  # vLLM's defaults otherwise
    gaps = []
    for prompt in prompts:
        ids, pixels, grid = vllm_preprocess(path, engine_args, prompt)
        assert ids == prompt.input_ids and torch.equal(grid, prompt.image_grid_thw)
        gaps.append(float((pixels - prompt.pixel_values).abs().max()))
    # The torchvision resize is not PIL's: the noise image's pixels differ by many 8-bit levels
    # (1 level = 1 / (255 * std) ~ 0.015 after normalisation). When this fails, vLLM's default
    # preprocessing has become the learner's: multimodal_engine_args could drop its overrides.
    assert gaps[0] > 0.05, gaps
