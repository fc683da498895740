"""The transformers engine's shared prefill (rollout/hf_engine.py `_shared_prefill`): each prompt's
KV cache is computed once and repeated for its n samples. It must sample exactly what prefilling
every row samples, on every model family and a text-only model: the same tokens (greedy, and
sampled from the same seed) and the same log-probs, for a batch mixing one-image, two-image and
text-only prompts of different lengths, over several generate() chunks and calls in a row (the
M-RoPE offsets the model keeps between calls must not leak). The comparison can fail: the same
cache at the wrong positions (a row's M-RoPE offset dropped; left padding counted as positions)
samples differently."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoTokenizer

from orchestrator.assets.synthetic import sample_task
from orchestrator.assets.tiny_model import ARCHS, make_tiny_model
from orchestrator.assets.tiny_text_model import make_tiny_text_model
from rollout import hf_engine
from rollout.engine import SamplingParams
from rollout.hf_engine import TransformersEngine
from rollout.inputs import PromptInputs, build_prompt_inputs
from rollout.processor import load_processor

TOL = 2e-5  # fp32: the two paths' log-probs differ by rounding only (~1e-6)


def _prompts(model_path: str, vision: bool) -> list:
    rng = random.Random(0)
    tasks = [sample_task("color", rng) for _ in range(3)]
    if not vision:  # chat prompts of a text-only model, of different lengths
        tok = AutoTokenizer.from_pretrained(model_path)
        return [PromptInputs(input_ids=list(tok.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False)))
            for text in ("What colour is the sky?", "Name a fruit.", tasks[0].problem)]
    processor = load_processor(model_path)
    return [build_prompt_inputs(processor, tasks[0].problem, [tasks[0].image]),
            build_prompt_inputs(processor, "Say hi.", []),
            build_prompt_inputs(processor, tasks[1].problem, [tasks[1].image, tasks[2].image]),
            build_prompt_inputs(processor, tasks[2].problem + " Think first.", [tasks[2].image])]


@pytest.fixture(scope="module", params=[*ARCHS, "qwen2-text"])
def engines(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param) / "m"
    vision = request.param != "qwen2-text"
    model = str(make_tiny_model(folder, arch=request.param, size="tiny") if vision else make_tiny_text_model(folder))
    # 6 rows a call: 2 prompts of n=3 per generate() chunk, so a batch takes several chunks.
    shared = TransformersEngine(model, max_batch_size=6)
    plain = TransformersEngine(model, max_batch_size=6, share_prefill=False)
    assert shared.share_prefill and not plain.share_prefill
    return shared, plain, _prompts(model, vision)


def _flat(groups):
    return [c for group in groups for c in group]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_shared_prefill_samples_what_the_plain_prefill_samples(engines, temperature):
    shared, plain, prompts = engines
    sampling = SamplingParams(n=3, temperature=temperature, max_new_tokens=12, seed=7)
    for batch in (prompts, prompts[1:2], prompts[::-1]):  # calls in a row: offsets of the last must not leak
        ours, theirs = _flat(shared.generate(batch, sampling)), _flat(plain.generate(batch, sampling))
        assert [c.token_ids for c in ours] == [c.token_ids for c in theirs]
        assert [c.finish_reason for c in ours] == [c.finish_reason for c in theirs]
        assert max(abs(a - b) for x, y in zip(ours, theirs, strict=True)
                   for a, b in zip(x.logprobs, y.logprobs, strict=True)) < TOL
    if temperature > 0:  # the samples of a group differ: the repeated cache is not one row n times
        assert len({tuple(c.token_ids) for c in _flat(shared.generate(prompts[:1], sampling))}) > 1


def test_the_comparison_sees_wrong_positions(engines, monkeypatch):
    """The same cache at the wrong rotary positions is refused: each row's M-RoPE offset dropped
    (VLMs), or the prefill counting left padding as positions (the text-only model)."""
    shared, plain, prompts = engines
    rope = getattr(shared.model, "model", None)
    if hasattr(rope, "rope_deltas"):
        original = shared._shared_prefill

        def without_offsets(batch, n):
            out = original(batch, n)
            rope.rope_deltas = rope.rope_deltas * 0
            return out

        monkeypatch.setattr(shared, "_shared_prefill", without_offsets)
        batch = prompts[:1]
    else:
        monkeypatch.setattr(hf_engine, "real_token_positions",
                            lambda mask: torch.arange(mask.shape[1]).expand_as(mask))
        batch = prompts[::-1]  # the long prompt beside a short one: 140 positions of left padding
    sampling = SamplingParams(n=2, temperature=0.0, max_new_tokens=12)
    ours, theirs = _flat(shared.generate(batch, sampling)), _flat(plain.generate(batch, sampling))
    assert max(abs(a - b) for x, y in zip(ours, theirs, strict=True)
               for a, b in zip(x.logprobs, y.logprobs, strict=False)) > 10 * TOL
