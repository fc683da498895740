"""After a learner step and a broadcast, every rollout worker scores a fixed sequence exactly as the
learner does (within 1e-5) and reports the learner's policy version."""

from __future__ import annotations

import pytest
import ray

from learner import LearnerConfig, LearnerGroup, Sample, TrainBatch
from orchestrator.sources import decode_image, load_task_dataset
from rollout.engine import SamplingParams
from rollout.inputs import build_prompt_inputs
from rollout.processor import load_processor
from rollout.worker import RolloutWorker


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_broadcast_makes_workers_match_learner(ray_cluster, tiny_model, color_data, zero_stage):
    processor = load_processor(tiny_model)
    row = next(r for r in load_task_dataset(color_data) if decode_image(r["image"]) is not None)
    prompt = build_prompt_inputs(processor, row["problem"], [decode_image(row["image"])])
    workers = [RolloutWorker.options(num_cpus=1).remote("hf", tiny_model, {}, 1) for _ in range(2)]
    cfg = LearnerConfig(world_size=2, zero_stage=zero_stage, lr=1e-2, torch_threads=1)
    learner = LearnerGroup(tiny_model, cfg, total_steps=1, pad_id=processor.tokenizer.pad_token_id)
    try:
        addr, port = learner.sync_endpoint()
        ray.get([learner.join_weight_sync(addr, port, 3, "gloo")]
                + [w.join_weight_sync.remote(addr, port, i + 1, 3, "gloo") for i, w in enumerate(workers)])
        groups, _ = ray.get(workers[0].generate.remote([prompt], SamplingParams(n=4, max_new_tokens=12, seed=3)))
        samples = [Sample(prompt_ids=prompt.input_ids, completion_ids=c.token_ids, reward=float(i % 2),
                          pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw,
                          prompt_mm_token_type_ids=prompt.mm_token_type_ids)
                   for i, c in enumerate(groups[0])]
        fixed = samples[0]
        before = learner.logprobs([fixed])[0]
        # The engine's sampling log-probs agree with the learner's before any update.
        assert max(abs(a - b) for a, b in zip(before, groups[0][0].logprobs, strict=True)) < 1e-5

        learner.train_step(TrainBatch(samples))
        after = learner.logprobs([fixed])[0]
        assert max(abs(a - b) for a, b in zip(before, after, strict=True)) > 1e-4  # the step changed it

        plan = learner.plan(bucket_mb=0.05)  # several buckets even for the tiny model
        assert len(plan) > 1
        receiving = [w.receive_weights.remote(plan, 1) for w in workers]
        learner.broadcast_weights(1, bucket_mb=0.05)
        assert ray.get(receiving) == [1, 1]
        for worker in workers:
            scored = ray.get(worker.score.remote(prompt, fixed.completion_ids))
            assert max(abs(a - b) for a, b in zip(after, scored, strict=True)) < 1e-5
            assert ray.get(worker.version.remote()) == 1
    finally:
        learner.shutdown()
        for w in workers:
            ray.kill(w)
