"""Multi-turn rollouts with image tools on vLLM (CPU): after a zoom, vLLM continues a token prompt that
holds the prompt's image and the zoomed view, and the learner's forward over the whole trajectory
gives vLLM's log-probs on the model's own tokens (the observation tokens masked)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vrft.learner.batch import collate
from vrft.learner.model import sequence_logprobs
from vrft.orchestrator.core.records import to_sample
from vrft.rollout.engine import SamplingParams
from vrft.rollout.hf_engine import TransformersEngine
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.vllm_engine import VLLMEngine

TOL = 1e-4  # fp32 both sides; two images in the sequence (test_images.py: 1e-5 with one)


@pytest.fixture(scope="module")
def tool_vlm(tmp_path_factory) -> str:
    from vrft.testing.tiny_model import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tools") / "qwen2_vl", size="small", tool_tokens=True))


def test_vllm_samples_after_a_zoom_as_the_learner_scores_it(tool_vlm, pixel_bounds):
    lo, hi = pixel_bounds(tool_vlm)
    engine = VLLMEngine(tool_vlm, seed=0, max_model_len=2048, min_pixels=lo, max_pixels=hi,
                        tools={"names": ["zoom"], "max_turns": 3, "max_total_tokens": 400})
    reference = TransformersEngine(tool_vlm)
    try:
        image = Image.new("RGB", (224, 168), (230, 230, 230))
        image.paste((200, 20, 20), (150, 100, 170, 116))
        prompt = build_prompt_inputs(engine.processor, "What colour is the small mark?", [image])
        call = engine.tokenizer('<tool_call>' + json.dumps({"name": "zoom", "arguments": {"box": [600, 500, 800, 750]}})
                                + "</tool_call>", add_special_tokens=False)["input_ids"]
        real, seen = engine._continue, []

        def first_scripted(contexts, sampling, stop_ids):
            seen.append(len(contexts))
            if len(seen) == 1:
                return [(call, [0.0] * len(call), True) for _ in contexts]
            return real(contexts, sampling, stop_ids)

        engine._continue = first_scripted
        [group] = engine.generate([prompt], SamplingParams(n=2, temperature=1.0, max_new_tokens=16, seed=3))
        engine._continue = real
        assert seen[:2] == [2, 2]  # both trajectories advanced together, turn by turn
        for done in group:
            traj = done.trajectory
            assert len(traj.views) == 2 and traj.turns[0].tool == "zoom" and traj.turns[0].error is None
            model_tokens = [i for i, m in enumerate(traj.token_mask) if m][len(call):]
            assert model_tokens
            batch = collate([to_sample(prompt, done.token_ids, traj)], pad_id=reference.pad_id)
            with torch.no_grad():
                logp, _ = sequence_logprobs(reference.model, batch, banned=reference.suppress)
            p = len(prompt.input_ids)
            learner = [float(logp[0, p - 1 + i]) for i in model_tokens]
            assert max(abs(a - done.logprobs[i]) for a, i in zip(learner, model_tokens, strict=True)) < TOL
    finally:
        engine.shutdown()
