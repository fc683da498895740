"""vLLM 0.32 never samples a banned token (`vrft.rollout.processor.banned_token_ids`), even from a model
that prefers `<|image_pad|>` by 200 logits: `sampling_kwargs` bans with a logit bias of -inf, where
the old -100 was no ban. Its `processed_logprobs` are then log_softmax(z/T) over the remaining
vocabulary, which is what the learner computes (`LearnerConfig.banned_token_ids`)."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from vrft.learner import Sample
from vrft.learner.batch import collate
from vrft.learner.model import sequence_logprobs
from vrft.rollout.engine import SamplingParams
from vrft.rollout.processor import banned_token_ids
from vrft.rollout.vllm_engine import VLLMEngine
from vrft.rollout.vllm_inputs import sampling_kwargs
from vrft.testing.tiny_model import prefer_token

TOL = 1e-5
PAD = 5  # <|image_pad|> in the offline tokenizer


@pytest.fixture(scope="module")
def prefers_pad(tiny_text_model, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("prefers-pad") / "model"
    shutil.copytree(tiny_text_model, out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    prefer_token(model, PAD)
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def engine(prefers_pad):
    engine = VLLMEngine(prefers_pad, seed=0, max_model_len=512)
    yield engine
    engine.shutdown()


def _learner_logprobs(path: str, prompt, completions: list[list[int]], temperature: float,
                      banned: list[int] | None) -> list[list[float]]:
    """The learner's own computation (vrft.learner.model.sequence_logprobs) on the same weights."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    pad_id = AutoTokenizer.from_pretrained(path).pad_token_id
    batch = collate([Sample(prompt_ids=prompt.input_ids, completion_ids=c) for c in completions], pad_id)
    with torch.no_grad():
        logp = sequence_logprobs(model, batch, temperature, banned=banned)[0]
    start = len(prompt.input_ids) - 1
    return [logp[row, start:start + len(c)].tolist() for row, c in enumerate(completions)]


def _generate(engine, prompt, kwargs: dict) -> list[list[int]]:
    out = engine.llm.generate([{"prompt_token_ids": prompt.input_ids}], engine._vllm.SamplingParams(**kwargs),
                              use_tqdm=False)[0]
    return out.outputs


def test_a_logit_bias_of_minus_100_is_no_ban(engine, text_prompts):
    kwargs = sampling_kwargs(SamplingParams(n=2, max_new_tokens=6, seed=1), engine.stop_ids, 1, None)
    kwargs["logit_bias"] = {PAD: -100.0}  # vrft's old "suppression": the token still wins by ~100
    assert all(set(c.token_ids) == {PAD} for c in _generate(engine, text_prompts[0], kwargs))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_ban_is_absolute_and_logprobs_are_the_learners(engine, prefers_pad, text_prompts, temperature):
    banned = banned_token_ids(engine.tokenizer)
    assert PAD in banned
    sampling = SamplingParams(n=4, max_new_tokens=12, temperature=temperature, seed=3)
    samples = _generate(engine, text_prompts[0], sampling_kwargs(sampling, engine.stop_ids, 3, banned))
    completions = [list(c.token_ids) for c in samples]
    assert all(completions) and not {t for c in completions for t in c} & set(banned)
    learner = _learner_logprobs(prefers_pad, text_prompts[0], completions, temperature, banned)
    whole = _learner_logprobs(prefers_pad, text_prompts[0], completions, temperature, None)
    for c, mine, unbanned in zip(samples, learner, whole, strict=True):
        vllm_lp = [float(lp[t].logprob) for lp, t in zip(c.logprobs, c.token_ids, strict=True)]
        assert max(abs(a - b) for a, b in zip(vllm_lp, mine, strict=True)) < TOL
        assert max(unbanned) < -100  # over the whole vocabulary: the comparison above can fail


def test_the_engine_bans_the_shared_set(engine, prefers_pad, text_prompts):
    assert engine.suppress == banned_token_ids(engine.tokenizer)
    groups = engine.generate(text_prompts[:1], SamplingParams(n=4, max_new_tokens=12, seed=5))
    completions = [c.token_ids for c in groups[0]]
    assert not {t for c in completions for t in c} & set(engine.suppress)
    learner = _learner_logprobs(prefers_pad, text_prompts[0], completions, 1.0, engine.suppress)
    for c, mine in zip(groups[0], learner, strict=True):
        assert max(abs(a - b) for a, b in zip(c.logprobs, mine, strict=True)) < TOL
        assert max(abs(a - b) for a, b in zip(engine.score(text_prompts[0], c.token_ids), mine, strict=True)) < TOL


def test_score_at_a_temperature_renormalises_over_the_allowed_tokens(engine, prefers_pad, text_prompts):
    groups = engine.generate(text_prompts[:1], SamplingParams(n=2, max_new_tokens=8, temperature=0.7, seed=6))
    completions = [c.token_ids for c in groups[0]]
    learner = _learner_logprobs(prefers_pad, text_prompts[0], completions, 0.7, engine.suppress)
    for c, mine in zip(groups[0], learner, strict=True):
        scored = engine.score(text_prompts[0], c.token_ids, temperature=0.7)
        assert max(abs(a - b) for a, b in zip(scored, mine, strict=True)) < TOL
