"""The VLLMEngine itself, in this process: log-probs at T != 1 (sampled and teacher-forced) against
the transformers engine, loading named tensors (`load_weights`), and construction refusals."""

from __future__ import annotations

import pytest
import torch

from vrft.rollout.engine import SamplingParams
from vrft.rollout.hf_engine import TransformersEngine
from vrft.rollout.vllm_engine import VLLMEngine

TOL = 1e-5


def max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def engines(tiny_text_model):
    engine = VLLMEngine(tiny_text_model, seed=0, max_model_len=512)
    yield engine, TransformersEngine(tiny_text_model)
    engine.shutdown()


def test_logprobs_follow_the_temperature(engines, text_prompts):
    engine, reference = engines
    prompt = text_prompts[0]
    groups = engine.generate([prompt], SamplingParams(n=2, max_new_tokens=16, temperature=0.7, seed=1))
    for c in groups[0]:
        expected = reference.score(prompt, c.token_ids, 0.7)
        assert max_diff(c.logprobs, expected) < TOL
        assert max_diff(engine.score(prompt, c.token_ids, 0.7), expected) < TOL
        # ... and differ from the T=1 ones, so the check above can fail
        assert max_diff(c.logprobs, reference.score(prompt, c.token_ids, 1.0)) > 1e-3


def test_load_weights_with_named_tensors(engines, text_prompts):
    engine, reference = engines
    prompt = text_prompts[0]
    ids = engine.generate([prompt], SamplingParams(n=1, max_new_tokens=12, seed=2))[0][0].token_ids
    gen = torch.Generator().manual_seed(0)
    named = {n: p.detach() + 0.05 * torch.randn(p.shape, generator=gen) for n, p in reference.model.named_parameters()}
    checksum = engine.param_checksum()
    engine.load_weights(named, version=7)
    reference.load_weights(named, version=7)
    assert engine.policy_version == 7
    assert abs(engine.param_checksum() - checksum) > 1.0
    assert max_diff(engine.score(prompt, ids), reference.score(prompt, ids)) < TOL
    assert engine.generate([prompt], SamplingParams(n=1, max_new_tokens=4, seed=0))[0][0].policy_version == 7


def test_sleep_mode_refused_before_start_on_cpu(tiny_text_model):
    import vllm

    # vLLM's own refusal, and ours, which comes before the 30-s engine start and names the cause.
    with pytest.raises(ValueError, match="Sleep mode is not supported"):
        vllm.config.ModelConfig(model=tiny_text_model, enable_sleep_mode=True)
    with pytest.raises(ValueError, match="sleep mode needs CUDA"):
        VLLMEngine(tiny_text_model, enable_sleep_mode=True)
    with pytest.raises(ValueError, match="sleep_level"):
        VLLMEngine(tiny_text_model, sleep_level=3)


def test_sleep_calls_on_a_running_cpu_engine_raise(engines):
    engine, _ = engines
    assert engine.supports_sleep is False
    with pytest.raises(RuntimeError, match="no sleep mode"):
        engine.sleep()
    assert not engine.sleeping
