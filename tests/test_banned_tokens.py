"""Banned tokens (`vrft.rollout.processor.banned_token_ids`): the transformers engine never samples a
special token other than the emitted ones, even from a model that prefers a vision placeholder by
200 logits, and the engine's and the learner's log-probs normalise over the same remaining
vocabulary. (vLLM: tests/vllm/test_banned_tokens.py.)"""

from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image

from vrft.learner import LearnerConfig, Sample
from vrft.learner.algorithms import entropy_from_logits, token_logprobs_from_logits
from vrft.learner.batch import collate
from vrft.learner.model import sequence_logprobs
from vrft.learner.worker import LearnerRank
from vrft.rollout.engine import SamplingParams
from vrft.rollout.hf_engine import TransformersEngine, load_causal_model
from vrft.rollout.inputs import build_prompt_inputs, collate_prompts
from vrft.rollout.processor import (
    banned_token_ids,
    load_processor,
    special_token_strings,
    vision_special_token_ids,
)
from vrft.testing.tiny_model import prefer_token

TOL = 1e-5


@pytest.fixture(scope="module")
def prefers_image_pad(tiny_model, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("prefers-image-pad") / "model"
    shutil.copytree(tiny_model, out)
    model = load_causal_model(str(out), torch.float32)
    prefer_token(model, load_processor(tiny_model).image_token_id)
    model.save_pretrained(out)
    return str(out)


def test_banned_set_is_every_special_token_but_the_emitted_ones(tiny_model):
    tok = load_processor(tiny_model).tokenizer
    vocab = tok.get_vocab()
    ids = {name: vocab[name] for name in special_token_strings(tok)}
    assert set(banned_token_ids(tok)) == {ids[n] for n in ("<|im_start|>", "<|vision_start|>", "<|vision_end|>",
                                                            "<|image_pad|>", "<|video_pad|>")}
    assert set(vision_special_token_ids(tok)) <= set(banned_token_ids(tok))
    # As Qwen2-VL's and Qwen3-VL's tokenizers: more special tokens (banned) and non-special added ones
    # such as <tool_call> or Qwen3's <think> (plain text to the policy); a base model's eos stays.
    tok.add_special_tokens({"additional_special_tokens": ["<|box_start|>", "<|box_end|>"]})
    tok.add_tokens(["<tool_call>"])
    vocab = tok.get_vocab()
    assert {vocab["<|box_start|>"], vocab["<|box_end|>"]} <= set(banned_token_ids(tok))
    assert vocab["<tool_call>"] not in banned_token_ids(tok) and vocab["<think>"] not in banned_token_ids(tok)
    tok.eos_token = "<|endoftext|>"
    assert not {vocab["<|im_end|>"], vocab["<|endoftext|>"]} & set(banned_token_ids(tok))


@pytest.mark.parametrize("own_loop", [True, False], ids=["decode-loop", "generate"])
def test_transformers_engine_never_samples_a_banned_token(prefers_image_pad, own_loop):
    engine = TransformersEngine(prefers_image_pad)
    engine.own_loop = own_loop  # False: transformers' generate() with suppress_tokens
    processor = load_processor(prefers_image_pad)
    pad, banned = processor.image_token_id, banned_token_ids(engine.tokenizer)
    prompt = build_prompt_inputs(processor, "What color is the shape?", [Image.new("RGB", (56, 56), (200, 30, 30))])
    samples = lambda ids: [Sample(prompt_ids=prompt.input_ids, completion_ids=c, pixel_values=prompt.pixel_values,  # noqa: E731
                                  image_grid_thw=prompt.image_grid_thw,
                                  prompt_mm_token_type_ids=prompt.mm_token_type_ids) for c in ids]
    with torch.no_grad():  # the model prefers the image placeholder by 200 logits
        first = engine.model(**collate_prompts([prompt], engine.pad_id)).logits[0, -1]
    assert int(first.argmax()) == pad and float(first[pad] - first.topk(2).values[1]) > 199

    groups = engine.generate([prompt], SamplingParams(n=4, max_new_tokens=12, seed=0))
    completions = [c.token_ids for c in groups[0]]
    assert all(completions) and not {t for c in completions for t in c} & set(banned)
    # The learner's log-probs over the same vocabulary (LearnerConfig.banned_token_ids) are the engine's.
    batch = collate(samples(completions), engine.pad_id)
    with torch.no_grad():
        learner = sequence_logprobs(engine.model, batch, banned=banned)[0]
        whole = sequence_logprobs(engine.model, batch)[0]
    start = len(prompt.input_ids) - 1
    for row, c in enumerate(groups[0]):
        mine = learner[row, start:start + len(c.token_ids)].tolist()
        assert max(abs(a - b) for a, b in zip(c.logprobs, mine, strict=True)) < TOL
        assert max(abs(a - b) for a, b in zip(engine.score(prompt, c.token_ids), mine, strict=True)) < TOL
        # ...and over the whole vocabulary they would be about -200: the comparison can fail.
        assert float(whole[row, start:start + len(c.token_ids)].max()) < -100


def test_learner_normaliser_leaves_the_banned_tokens_out():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 10, generator=gen)
    logits[..., 4] += 50.0  # a banned token that dominates
    logits.requires_grad_(True)
    banned, allowed = [4, 7], [0, 1, 2, 3, 5, 6, 8, 9]
    labels = torch.tensor([[0, 5, 9], [3, 8, 1]])
    expected = torch.log_softmax(logits.detach()[..., allowed] / 0.7, dim=-1)
    logp = token_logprobs_from_logits(logits, labels, temperature=0.7, banned=banned)
    index = torch.tensor([allowed.index(int(t)) for t in labels.flatten()]).view_as(labels)
    assert torch.allclose(logp, expected.gather(-1, index[..., None]).squeeze(-1), atol=1e-6)
    entropy = entropy_from_logits(logits, temperature=0.7, banned=banned)
    assert torch.allclose(entropy, -(expected.exp() * expected).sum(-1), atol=1e-5)
    (logp.sum() + entropy.sum()).backward()  # an entropy bonus through -inf logits: no NaN
    assert torch.isfinite(logits.grad).all() and not logits.grad[..., banned].any()
    # A banned label (a prompt or padding position) is finite, so masking it out stays finite.
    assert torch.isfinite(token_logprobs_from_logits(logits, torch.full((2, 3), 4), banned=banned)).all()


def test_a_trained_completion_with_a_banned_token_is_refused():
    rank = LearnerRank(0, 1, LearnerConfig(banned_token_ids=[5]).model_dump())
    clean = Sample(prompt_ids=[1, 2], completion_ids=[7, 2])
    rank._check_not_banned([[clean, Sample(prompt_ids=[1], completion_ids=[5], weight=0.0)]])  # a zero-weight filler
    with pytest.raises(ValueError, match=r"banned token id\(s\) \[5\]"):
        rank._check_not_banned([[clean], [Sample(prompt_ids=[1, 2], completion_ids=[3, 5, 2])]])
