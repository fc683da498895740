"""The offline model factory: files, sizes, seeding, tokenizer, and both architectures working."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoTokenizer

from vrft.rollout.inputs import build_prompt_inputs, collate_prompts
from vrft.rollout.processor import VLProcessor, load_processor, vision_special_token_ids
from vrft.testing.synthetic import sample_task
from vrft.testing.tiny_model import FORMAT_TOKENS, SPECIAL_TOKENS, build_tokenizer, describe, make_tiny_model


@pytest.fixture(scope="module")
def qwen25(tmp_path_factory) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp("m") / "q25", arch="qwen2_5_vl", size="tiny"))


def test_folder_loads_like_a_hub_checkpoint(tiny_model):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    processor = load_processor(tiny_model)
    assert isinstance(processor, VLProcessor)
    tok = processor.tokenizer
    assert model.config.text_config.vocab_size == len(tok)  # no logit rows the tokenizer cannot decode
    assert model.generation_config.eos_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.pad_token_id == tok.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert processor.image_processor.size.shortest_edge == 28 * 28 * 4
    assert processor.image_processor.size.longest_edge == 28 * 28 * 16
    assert VLProcessor.from_pretrained(tiny_model).tokenizer.get_vocab() == tok.get_vocab()
    # Tools that use AutoProcessor (vLLM) see the stock class name, not ours.
    assert json.loads(open(f"{tiny_model}/processor_config.json").read())["processor_class"] == "Qwen2VLProcessor"


def test_tokenizer(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert tok.padding_side == "left"
    vocab = tok.get_vocab()
    for t in (*SPECIAL_TOKENS, *FORMAT_TOKENS):
        assert tok(t, add_special_tokens=False)["input_ids"] == [vocab[t]]
    text = "<think>I see 3 circles.</think><answer>[{'Position': [12, 345, 678, 1000], 'Confidence': 0.95}]</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    # The format tags are ordinary tokens: rewards still see them after skip_special_tokens.
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == text
    assert tok.decode(ids) == text
    # Digits are single tokens, so numbers are digit sequences.
    assert tok.convert_ids_to_tokens(tok("345", add_special_tokens=False)["input_ids"]) == ["3", "4", "5"]
    # Byte-level: any text round-trips, even outside the training corpus.
    odd = "Zebra ünïcode ✓ 7"
    assert tok.decode(tok(odd, add_special_tokens=False)["input_ids"]) == odd


def test_tokenizer_is_deterministic():
    assert build_tokenizer(384).get_vocab() == build_tokenizer(384).get_vocab()


def test_sizes(tiny_model, qwen25, tmp_path):
    tiny = describe(tiny_model)
    assert 150_000 <= tiny["total"] <= 300_000, tiny
    assert 150_000 <= describe(qwen25)["total"] <= 300_000
    small = describe(make_tiny_model(tmp_path / "small", size="small"))
    assert 10_000_000 <= small["total"] <= 30_000_000, small
    assert 1000 <= small["vocab"] <= 2048


def test_seeded_weights(tiny_model, tmp_path):
    same = load_file(str(make_tiny_model(tmp_path / "same", seed=0) / "model.safetensors"))
    other = load_file(str(make_tiny_model(tmp_path / "other", seed=1) / "model.safetensors"))
    ref = load_file(f"{tiny_model}/model.safetensors")
    assert same.keys() == ref.keys() and all(torch.equal(same[k], ref[k]) for k in ref)
    assert any(not torch.equal(other[k], ref[k]) for k in ref)


def generates_and_scores_batched(model, processor, prompts) -> None:
    """Sampling works on a left-padded batch of repeated prompts, and each prompt's logits in the
    batch equal those of the prompt alone (padding and the vision inputs line up)."""
    pad = processor.tokenizer.pad_token_id
    batch = collate_prompts(prompts, pad, repeat=2)
    with torch.no_grad():
        out = model.generate(**batch, do_sample=True, max_new_tokens=8,
                             suppress_tokens=vision_special_token_ids(processor.tokenizer))
        assert out.shape[0] == 2 * len(prompts)
        batched = model(**batch).logits
        for i, p in enumerate(prompts):
            alone = model(**collate_prompts([p], pad)).logits[0]
            torch.testing.assert_close(batched[2 * i + 1, -len(p):], alone, atol=1e-4, rtol=0)


def _prompts(processor, n: int = 2):
    rng = random.Random(1)
    samples = [sample_task(task, rng) for task in ("counting", "detection")][:n]
    return [build_prompt_inputs(processor, s.problem, [s.image]) for s in samples]


def test_suppressed_vision_tokens_are_never_sampled(tiny_model):
    processor = load_processor(tiny_model)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model).eval()
    suppress = vision_special_token_ids(processor.tokenizer)
    # Make the vision tokens by far the likeliest, so the check below is not luck.
    hook = model.lm_head.register_forward_hook(lambda m, i, out: out.index_add(
        -1, torch.tensor(suppress), torch.full((*out.shape[:-1], len(suppress)), 30.0)))
    batch = collate_prompts(_prompts(processor), processor.tokenizer.pad_token_id, repeat=4)
    start = batch["input_ids"].shape[1]
    with torch.no_grad():
        free = model.generate(**batch, do_sample=True, max_new_tokens=6)
        held = model.generate(**batch, do_sample=True, max_new_tokens=6, suppress_tokens=suppress)
    hook.remove()
    assert torch.isin(free[:, start:], torch.tensor(suppress)).float().mean() > 0.9
    assert not torch.isin(held[:, start:], torch.tensor(suppress)).any()


def test_qwen2_5_vl_tiny_generates_and_scores(qwen25):
    model = AutoModelForImageTextToText.from_pretrained(qwen25).eval()
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert model.config.vision_config.out_hidden_size == model.config.text_config.hidden_size
    processor = load_processor(qwen25)
    prompts = _prompts(processor)
    generates_and_scores_batched(model, processor, prompts)


def test_forward_with_completion_and_backward(tiny_model):
    """The learner's scoring pass: prompt + completion, mm_token_type_ids extended with zeros."""
    processor = load_processor(tiny_model)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model)
    batch = collate_prompts(_prompts(processor, 1), processor.tokenizer.pad_token_id)
    completion = torch.tensor([processor.tokenizer("<think>x</think><answer>3</answer>")["input_ids"]])
    batch["input_ids"] = torch.cat([batch["input_ids"], completion], 1)
    batch["attention_mask"] = torch.cat([batch["attention_mask"], torch.ones_like(completion)], 1)
    batch["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(completion)], 1)
    logits = model(**batch).logits[:, -completion.shape[1] - 1:-1]
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), completion.flatten())
    loss.backward()
    assert torch.isfinite(loss)
    assert model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0  # gradients reach the vision tower


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="arch"):
        make_tiny_model(tmp_path / "x", arch="llava")
    with pytest.raises(ValueError, match="size"):
        make_tiny_model(tmp_path / "x", size="huge")
