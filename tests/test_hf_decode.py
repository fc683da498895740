"""The transformers engine's own sampling loop (rollout/decode.py) against transformers' generate(),
on every model family and a text-only Qwen2, for a batch mixing one-image, two-image and text-only
prompts of different lengths (left padding), over several chunks and calls in a row (the M-RoPE
offsets the model keeps between calls must not leak):

- greedy, it gives generate()'s tokens, finish reasons and log-probs, with each prompt prefilled
  once for its n samples (the default) and with every row prefilled, with rows stopping at
  different steps, so finished rows are dropped from the batch mid-way;
- sampled from a seed, shared and per-row prefill sample the same tokens, and dropping finished
  rows changes no sample;
- its logits processors are transformers' own, and its inverse-CDF draw follows the distribution.

The comparison can fail: the same loop at the wrong rotary positions (each row's M-RoPE offset
dropped; left padding counted as positions) gives other log-probs."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from transformers import AutoTokenizer
from transformers.generation import logits_process as hf

from vrft.rollout import decode
from vrft.rollout.engine import SamplingParams
from vrft.rollout.hf_engine import TransformersEngine
from vrft.rollout.inputs import PromptInputs, build_prompt_inputs
from vrft.rollout.processor import load_processor
from vrft.testing.synthetic import sample_task
from vrft.testing.tiny_model import ARCHS, make_tiny_model
from vrft.testing.tiny_text_model import make_tiny_text_model

TOL = 2e-5  # fp32: the two paths' log-probs differ by rounding only (~1e-6)
ROWS_A_CALL = 6  # 2 prompts of n=3 per generate() chunk, so a batch takes several chunks


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


def _stop_midway(engine: TransformersEngine, prompts, sampling: SamplingParams) -> None:
    """A stop token that ends rows at the most different steps, some never (a random tiny model
    rarely emits its real end-of-text): the token whose first occurrences in the greedy rows are
    the most spread."""
    rows = [ids for ids, _, _ in _hf_rows(engine, prompts, sampling)]

    def spread(token: int) -> int:
        return len({ids.index(token) if token in ids else None for ids in rows})

    engine.eos_ids = {max(sorted({t for ids in rows for t in ids}), key=spread)}


def _hf_rows(engine: TransformersEngine, prompts, sampling: SamplingParams):
    per_chunk = ROWS_A_CALL // sampling.n
    return [row for first in range(0, len(prompts), per_chunk)
            for row in engine._hf_generate(prompts[first:first + per_chunk], sampling)]


def _flat(groups):
    return [c for group in groups for c in group]


@pytest.fixture(scope="module", params=[*ARCHS, "qwen2-text"])
def engines(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param) / "m"
    vision = request.param != "qwen2-text"
    model = str(make_tiny_model(folder, arch=request.param, size="tiny") if vision else make_tiny_text_model(folder))
    shared = TransformersEngine(model, max_batch_size=ROWS_A_CALL)
    plain = TransformersEngine(model, max_batch_size=ROWS_A_CALL, share_prefill=False)
    assert shared.own_loop and shared.share_prefill and not plain.share_prefill
    prompts = _prompts(model, vision)
    greedy = SamplingParams(n=3, temperature=0.0, max_new_tokens=12)
    _stop_midway(shared, prompts, greedy)
    plain.eos_ids = shared.eos_ids
    return shared, plain, prompts


def test_greedy_decoding_is_generates(engines, monkeypatch):
    shared, plain, prompts = engines
    sampling = SamplingParams(n=3, temperature=0.0, max_new_tokens=12)
    kept: list[int] = []
    keep_rows = decode.ReservedLayer.keep_rows
    monkeypatch.setattr(decode.ReservedLayer, "keep_rows", lambda self, rows: (kept.append(len(rows)),
                                                                               keep_rows(self, rows)))
    for engine in (shared, plain):
        for batch in (prompts, prompts[1:2], prompts[::-1]):
            ours, theirs = _flat(engine.generate(batch, sampling)), _hf_rows(engine, batch, sampling)
            assert [c.token_ids for c in ours] == [ids for ids, _, _ in theirs]
            assert [c.finish_reason == "stop" for c in ours] == [stopped for _, _, stopped in theirs]
            assert max(abs(a - b) for c, (_, logprobs, _) in zip(ours, theirs, strict=True)
                       for a, b in zip(c.logprobs, logprobs, strict=True)) < TOL
    lengths = {len(c.token_ids) for c in _flat(shared.generate(prompts, sampling))}
    assert len(lengths) > 1 and kept  # rows stopped at different steps, and some were dropped mid-way


@pytest.mark.parametrize("compact_at", [0.0, 1.0])
def test_shared_and_plain_prefill_sample_the_same(engines, monkeypatch, compact_at):
    """Sampled: per-row prefill, and shared prefill dropping finished rows as soon as one finishes
    (1.0) or never before all have (0.0), draw exactly the same samples."""
    shared, plain, prompts = engines
    sampling = SamplingParams(n=3, temperature=1.0, top_p=0.9, top_k=50, max_new_tokens=12, seed=7)
    theirs = [_flat(plain.generate(batch, sampling)) for batch in (prompts, prompts[1:2], prompts[::-1])]
    monkeypatch.setattr(decode, "COMPACT_AT", compact_at)
    for batch, their in zip((prompts, prompts[1:2], prompts[::-1]), theirs, strict=True):
        ours = _flat(shared.generate(batch, sampling))
        assert [c.token_ids for c in ours] == [c.token_ids for c in their]
        assert [c.finish_reason for c in ours] == [c.finish_reason for c in their]
        assert max(abs(a - b) for x, y in zip(ours, their, strict=True)
                   for a, b in zip(x.logprobs, y.logprobs, strict=True)) < TOL
    # The samples of a group differ: the repeated cache is not one row n times.
    assert len({tuple(c.token_ids) for c in _flat(shared.generate(prompts[:1], sampling))}) > 1


def test_the_comparison_sees_wrong_positions(engines, monkeypatch):
    """The loop continuing at the wrong rotary positions is refused: after the padded prompt length
    instead of each row's last position (which drops a row's left padding and its M-RoPE offset)."""
    shared, _, prompts = engines
    monkeypatch.setattr(shared, "eos_ids", {shared.tokenizer.eos_token_id})  # long rows to compare
    sampling = SamplingParams(n=2, temperature=0.0, max_new_tokens=12)
    theirs = _hf_rows(shared, prompts[::-1], sampling)
    monkeypatch.setattr(decode, "continuation", lambda positions: torch.full_like(
        positions[..., -1:], positions.shape[-1]))
    ours = _flat(shared.generate(prompts[::-1], sampling))
    assert max(abs(a - b) for c, (_, logprobs, _) in zip(ours, theirs, strict=True)
               for a, b in zip(c.logprobs, logprobs, strict=False)) > 10 * TOL


@pytest.mark.parametrize("settings", [dict(temperature=0.7), dict(temperature=1.0, top_k=5),
                                      dict(temperature=1.3, top_p=0.8), dict(temperature=1.0, top_k=40, top_p=0.5)])
def test_logits_processors_are_transformers(settings):
    logits = torch.randn(8, 300, generator=torch.Generator().manual_seed(0)) * 3
    suppress = [3, 17, 250]
    sampling = SamplingParams(**settings)
    theirs = hf.LogitsProcessorList([hf.SuppressTokensLogitsProcessor(suppress),
                                     hf.TemperatureLogitsWarper(sampling.temperature)])
    if sampling.top_k:
        theirs.append(hf.TopKLogitsWarper(sampling.top_k))
    if sampling.top_p < 1:
        theirs.append(hf.TopPLogitsWarper(sampling.top_p))
    expected = theirs(torch.zeros(8, 1, dtype=torch.long), logits.clone())
    ours = decode.warp(logits, sampling, torch.tensor(suppress))
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    assert torch.allclose(ours[~torch.isinf(ours)], expected[~torch.isinf(expected)])
    assert torch.isinf(ours).any()  # the comparison covers filtered tokens


def test_inverse_cdf_draw_follows_the_distribution():
    probs = torch.tensor([0.0, 0.5, 0.0, 0.2, 0.3, 0.0])
    logits = probs.log().expand(4, -1)
    edges = torch.tensor([0.0, 0.4999, 0.6, 1.0])  # 1.0: a uniform rounded up to the top
    assert decode.pick(logits, edges, greedy=False).tolist() == [1, 1, 3, 4]  # never a zero-probability token
    generator = torch.Generator().manual_seed(0)
    draws = decode.pick(probs.log().expand(20_000, -1), torch.rand(20_000, generator=generator), greedy=False)
    freq = Counter(draws.tolist())
    assert set(freq) == {1, 3, 4}
    assert all(abs(freq[t] / 20_000 - probs[t].item()) < 0.015 for t in (1, 3, 4))
    assert decode.pick(logits, edges, greedy=True).tolist() == [1] * 4


def test_a_sliding_window_model_decodes_as_generate(tmp_path):
    """A Qwen2 with sliding-window layers (which drop old tokens from their cache) beside full ones:
    the loop leaves the window layers' own update in place and still samples generate()'s tokens."""
    import json

    model = make_tiny_text_model(tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    config.update(use_sliding_window=True, sliding_window=6, max_window_layers=1, layer_types=None)
    (model / "config.json").write_text(json.dumps(config))
    engine = TransformersEngine(str(model), max_batch_size=ROWS_A_CALL)
    assert "sliding_attention" in engine.model.config.layer_types and engine.own_loop
    prompts = _prompts(str(model), vision=False)
    sampling = SamplingParams(n=3, temperature=0.0, max_new_tokens=12)
    _stop_midway(engine, prompts, sampling)  # rows dropped midway: the window layers' rows too
    ours, theirs = _flat(engine.generate(prompts, sampling)), _hf_rows(engine, prompts, sampling)
    assert [c.token_ids for c in ours] == [ids for ids, _, _ in theirs]
    assert len({len(c.token_ids) for c in ours}) > 1
    assert max(abs(a - b) for c, (_, logprobs, _) in zip(ours, theirs, strict=True)
               for a, b in zip(c.logprobs, logprobs, strict=True)) < TOL
