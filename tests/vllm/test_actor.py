"""vLLM on CPU behind the RolloutWorker Ray actor: G samples per prompt with log-probs and seeds, a
weight update from a DeepSpeed learner through vLLM's weight-transfer API (vrft's gloo engine
registered in vLLM's factory: vLLM's own worker-side lifecycle, only the transport is ours), and
the CPU backend's answer to sleep. Log-probs are compared with a tolerance of 1e-5 (fp32 on both sides; measured ~5e-7)."""

from __future__ import annotations

import pytest
import ray
from transformers import AutoTokenizer

from vrft.learner import LearnerConfig, LearnerGroup, Sample, TrainBatch
from vrft.rollout.client import WorkerClient
from vrft.rollout.engine import SamplingParams
from vrft.rollout.hf_engine import TransformersEngine
from vrft.rollout.processor import banned_token_ids
from vrft.rollout.worker import RolloutWorker

TOL = 1e-5
EOS = 2  # <|im_end|> in the offline tokenizer


def max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def worker(ray_cluster, tiny_text_model):
    actor = RolloutWorker.options(num_cpus=1).remote("vllm", tiny_text_model, {"seed": 0, "max_model_len": 512}, 1)
    ray.get(actor.ready.remote(), timeout=600)
    yield actor
    ray.kill(actor)


@pytest.fixture(scope="module")
def reference(tiny_text_model) -> TransformersEngine:
    """The transformers engine: its teacher-forced log-probs are the learner's computation."""
    return TransformersEngine(tiny_text_model)


def test_samples_n_per_prompt_with_learner_logprobs(worker, reference, text_prompts):
    groups, seconds = ray.get(worker.generate.remote(text_prompts, SamplingParams(n=4, max_new_tokens=24, seed=11)))
    assert seconds > 0
    assert [len(g) for g in groups] == [4, 4]
    for i, group in enumerate(groups):
        assert [c.sample_index for c in group] == [0, 1, 2, 3]
        assert len({tuple(c.token_ids) for c in group}) > 1  # a random policy: samples differ
        for c in group:
            assert c.policy_version == 0
            assert len(c.logprobs) == len(c.token_ids) > 0
            if c.finish_reason == "stop":
                assert c.token_ids[-1] == EOS and EOS not in c.token_ids[:-1]
            else:
                assert c.finish_reason == "length" and len(c.token_ids) == 24
            assert c.text == reference.tokenizer.decode(c.token_ids, skip_special_tokens=True)
            assert max_diff(c.logprobs, reference.score(text_prompts[i], c.token_ids)) < TOL


def test_seeds_are_honoured(worker, text_prompts):
    def sample(seed):
        groups, _ = ray.get(worker.generate.remote(text_prompts[:1], SamplingParams(n=3, max_new_tokens=12, seed=seed)))
        return [c.token_ids for c in groups[0]]

    assert sample(5) == sample(5)
    assert sample(5) != sample(6)


def test_sleep_is_refused_clearly_on_cpu(worker, text_prompts):
    from vllm.platforms import current_platform

    assert not current_platform.is_sleep_mode_available()  # vLLM's CPU backend has no sleep mode
    with pytest.raises(RuntimeError, match="no sleep mode"):
        ray.get(worker.sleep.remote())
    with pytest.raises(RuntimeError, match="no sleep mode"):
        ray.get(worker.wake_up.remote())
    groups, _ = ray.get(worker.generate.remote(text_prompts[:1], SamplingParams(n=2, max_new_tokens=4, seed=0)))
    assert len(groups[0]) == 2  # the engine is untouched and still serves


def test_weight_update_from_deepspeed_learner(worker, tiny_text_model, text_prompts):
    prompt = text_prompts[1]  # fills whole KV blocks: the prefix cache holds it from the old weights
    # The engine never samples the tokenizer's special tokens and normalises without them: so does the
    # learner, with the set the orchestrator gives it (orchestrator/train/loop.py).
    banned = banned_token_ids(AutoTokenizer.from_pretrained(tiny_text_model))
    cfg = LearnerConfig(world_size=1, zero_stage=2, lr=1e-2, beta=0.0, torch_threads=1, banned_token_ids=banned)
    learner = LearnerGroup(tiny_text_model, cfg, total_steps=2, pad_id=0)
    try:
        world = 1 + ray.get(worker.sync_ranks.remote())
        options = {"engine": "vllm", "bucket_mb": 0.05, "timeout_s": 60.0, "world_size": world,
                   "endpoint": learner.sync_endpoint(), "rename": None}  # a text model: names as they are
        learner.init_weight_transfer("gloo", WorkerClient([worker], [1]), options, timeout_s=120)
        groups, _ = ray.get(worker.generate.remote([prompt], SamplingParams(n=4, max_new_tokens=16, seed=3)))
        samples = [Sample(prompt_ids=prompt.input_ids, completion_ids=c.token_ids, reward=float(i % 2))
                   for i, c in enumerate(groups[0])]
        fixed = samples[0]
        before = learner.logprobs([fixed])[0]
        assert max_diff(before, groups[0][0].logprobs) < TOL  # engine and learner agree at version 0

        learner.train_step(TrainBatch(samples))
        after = learner.logprobs([fixed])[0]
        assert max_diff(before, after) > 1e-3  # the step moved the policy

        plan = learner.plan(bucket_mb=0.05)
        assert len(plan) > 1  # several buckets even for this tiny model
        stats = learner.send_weights(1, timeout_s=120)
        assert stats["buckets"] == len(plan)
        assert ray.get(worker.version.remote()) == 1
        assert max_diff(ray.get(worker.score.remote(prompt, fixed.completion_ids)), after) < TOL

        # Sampling again from the same prompt: the stale prefix cache was dropped, so the
        # sampled log-probs are the new policy's.
        groups, _ = ray.get(worker.generate.remote([prompt], SamplingParams(n=2, max_new_tokens=16, seed=4)))
        for c in groups[0]:
            assert c.policy_version == 1
            learner_lp = learner.logprobs([Sample(prompt_ids=prompt.input_ids, completion_ids=c.token_ids)])[0]
            assert max_diff(c.logprobs, learner_lp) < TOL
    finally:
        learner.shutdown()
