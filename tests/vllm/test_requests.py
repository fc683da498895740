"""Request building and weight names against vLLM's own types (no engine is started).

vLLM's Qwen2-VL model file cannot be imported on CPU (it needs torchvision), so the multimodal
checks use vLLM's input schema (`TokensPrompt`), its multimodal data parser and config, and, for
weight names, the `hf_to_vllm_mapper` table read from vLLM's Qwen2-VL source with `ast`.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from vrft.orchestrator.data.sources import decode_image, load_task_dataset
from vrft.rollout.engine import SamplingParams
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor
from vrft.rollout.vllm_inputs import (
    build_request,
    multimodal_engine_args,
    sampling_kwargs,
    weight_name_mapper,
)


@pytest.fixture(scope="module")
def vl_prompt(tiny_model, color_data):
    processor = load_processor(tiny_model, min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    rows = [r for r in load_task_dataset(color_data) if decode_image(r["image"]) is not None]
    images = [decode_image(rows[0]["image"]), decode_image(rows[1]["image"]).resize((84, 56))]
    return processor, build_prompt_inputs(processor, rows[0]["problem"], images)


def test_request_is_a_tokens_prompt_vllm_parses(vl_prompt):
    from vllm.inputs import TokensPrompt
    from vllm.multimodal.parse import MultiModalDataParser

    processor, prompt = vl_prompt
    request = build_request(prompt, processor.image_token_id)
    fields = typing.get_type_hints(TokensPrompt)
    assert set(request) <= set(fields) and TokensPrompt.__required_keys__ <= set(request)
    assert all(isinstance(t, int) for t in request["prompt_token_ids"])
    assert request["prompt_token_ids"].count(processor.image_token_id) == 2  # one pad per image
    items = MultiModalDataParser().parse_mm_data(request["multi_modal_data"])
    assert items.get_count("image") == 2
    assert [tuple(items["image"].get_image_size(i)) for i in range(2)] == [im.size for im in prompt.images]


def test_text_prompt_is_a_plain_tokens_prompt(vl_prompt):
    from vllm.inputs import TokensPrompt

    processor, _ = vl_prompt
    text = build_prompt_inputs(processor, "What is 2 + 2?", [])
    request = build_request(text, processor.image_token_id)
    assert request == {"prompt_token_ids": text.input_ids}
    assert set(request) <= set(typing.get_type_hints(TokensPrompt))


def test_engine_mm_args_are_a_valid_vllm_multimodal_config():
    from vllm.config import MultiModalConfig

    args = multimodal_engine_args(28 * 28 * 4, 28 * 28 * 16, limit_images=2)
    config = MultiModalConfig(limit_per_prompt=args["limit_mm_per_prompt"],
                              mm_processor_kwargs=args["mm_processor_kwargs"],
                              mm_device_do_normalize=args["mm_device_do_normalize"])
    assert config.get_limit_per_prompt("image") == 2 and config.get_limit_per_prompt("video") == 0
    assert config.mm_processor_kwargs == {"min_pixels": 3136, "max_pixels": 12544, "use_fast": False}
    assert config.mm_device_do_normalize is False
    # Normalised on the host: vLLM then leaves the processor's own do_normalize / do_rescale alone.
    assert "do_normalize" not in config.merge_mm_processor_kwargs({})


def test_sampling_kwargs_make_vllm_sampling_params():
    import vllm

    sp = vllm.SamplingParams(**sampling_kwargs(SamplingParams(n=8, temperature=0.9, top_p=0.95, top_k=0,
                                                              max_new_tokens=32, seed=4), [2, 0], 12, [5, 6]))
    assert (sp.n, sp.temperature, sp.top_p, sp.top_k, sp.max_tokens, sp.seed) == (8, 0.9, 0.95, 0, 32, 12)
    assert sp.logprobs == 0 and sp.stop_token_ids == [0, 2] and sp.detokenize is False
    assert sp.logit_bias == {5: float("-inf"), 6: float("-inf")}  # a hard ban: vLLM does not clamp it here


def _vllm_prefix_mapper(module: str, cls: str) -> dict[str, str]:
    """`cls.hf_to_vllm_mapper`'s orig_to_new_prefix, read from vLLM's source without importing it."""
    import vllm

    source = Path(vllm.__file__).parent / "model_executor" / "models" / f"{module}.py"
    tree = ast.parse(source.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    assign = next(s for s in node.body if isinstance(s, ast.Assign) and s.targets[0].id == "hf_to_vllm_mapper")
    kw = next(k for k in assign.value.keywords if k.arg == "orig_to_new_prefix")
    return ast.literal_eval(kw.value)


@pytest.mark.parametrize(("arch", "module", "cls"), [
    ("qwen2_vl", "qwen2_vl", "Qwen2VLForConditionalGeneration"),
    ("qwen2_5_vl", "qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration"),
])
def test_vlm_weight_names_land_in_vllm_modules(tmp_path, arch, module, cls):
    from transformers import AutoModelForImageTextToText
    from vllm.model_executor.models.utils import WeightsMapper

    from vrft.testing.tiny_model import make_tiny_model

    model = AutoModelForImageTextToText.from_pretrained(make_tiny_model(tmp_path / arch, arch=arch))
    names = [n for n, _ in model.named_parameters()]
    rename = weight_name_mapper(arch, is_vlm=True)
    ours = [rename(n) for n in names]
    assert len(set(ours)) == len(names)
    # What vLLM's loader does next with them: its own prefix table, then its module tree
    # (language_model = Qwen2ForCausalLM with model.* and lm_head.*; visual = the vision tower).
    vllm_names = WeightsMapper(orig_to_new_prefix=_vllm_prefix_mapper(module, cls)).apply_list(ours)
    assert len(vllm_names) == len(names)
    for theirs, mine in zip(vllm_names, names, strict=True):
        if mine.startswith("model.visual."):
            assert theirs == mine.removeprefix("model.")
        elif mine.startswith("lm_head."):
            assert theirs == "language_model." + mine
        else:
            assert theirs == "language_model.model." + mine.removeprefix("model.language_model.")



def test_weight_name_mapper_is_explicit():
    rename = weight_name_mapper("qwen2_vl", is_vlm=True)
    assert rename("model.language_model.layers.0.mlp.up_proj.weight") == "model.layers.0.mlp.up_proj.weight"
    assert rename("model.visual.blocks.1.attn.qkv.bias") == "visual.blocks.1.attn.qkv.bias"
    assert rename("lm_head.weight") == "lm_head.weight"
    with pytest.raises(ValueError, match="matches no known qwen2_vl prefix"):
        rename("model.embed_tokens.weight")  # a pre-4.52 name: refused, not guessed
    with pytest.raises(ValueError, match="no transformers->vLLM weight-name mapping"):
        weight_name_mapper("llava", is_vlm=True)
    same = weight_name_mapper("qwen2", is_vlm=False)  # text-only causal LMs: checkpoint names
    assert same("model.layers.0.self_attn.q_proj.weight") == "model.layers.0.self_attn.q_proj.weight"

