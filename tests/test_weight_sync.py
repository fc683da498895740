"""After a learner step and a broadcast, every rollout worker scores a fixed sequence exactly as the
learner does (within 1e-5) and reports the learner's policy version."""

from __future__ import annotations

import pytest
import ray
import torch

from learner import LearnerConfig, LearnerGroup, Sample, TrainBatch
from learner.lora import plain_entries
from learner.weight_sync import iter_buckets, make_plan
from orchestrator.sources import decode_image, load_task_dataset
from rollout.engine import SamplingParams
from rollout.inputs import build_prompt_inputs
from rollout.processor import load_processor
from rollout.weight_sync import bucket_buffer
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
        assert len(plan) > 1 and len({b["numel"] for b in plan}) > 1
        for version in (1, 2):  # the second sync reuses both ends' CPU bucket buffers
            if version == 2:
                learner.train_step(TrainBatch(samples))
                after = learner.logprobs([fixed])[0]
            receiving = [w.receive_weights.remote(plan, version) for w in workers]
            learner.broadcast_weights(version, bucket_mb=0.05)
            assert ray.get(receiving) == [version, version]
            for worker in workers:
                scored = ray.get(worker.score.remote(prompt, fixed.completion_ids))
                assert max(abs(a - b) for a, b in zip(after, scored, strict=True)) < 1e-5
                assert ray.get(worker.version.remote()) == version
    finally:
        learner.shutdown()
        for w in workers:
            ray.kill(w)


def test_cpu_bucket_buffers_are_reused_and_grow():
    """Both ends keep one CPU buffer per dtype: every bucket, and the next sync, is written into it,
    grown for a larger bucket; what the learner sends equals a fresh concatenation."""
    module = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Linear(2, 8))  # 8, 2, 16, 8 elements
    entries = plain_entries(module, changing_only=True)
    plan = make_plan(entries, torch.float32, bucket_mb=12 * 4 / 2**20)  # at most 12 elements a bucket
    assert [b["numel"] for b in plan] == [10, 16, 8]  # the second bucket is larger than the first
    fresh = [t.clone() for t in iter_buckets(entries, plan, zero3=False)]
    sent: dict[torch.dtype, torch.Tensor] = {}
    for _ in range(2):
        reused = [t.clone() for t in iter_buckets(entries, plan, zero3=False, buffers=sent)]
        assert all(torch.equal(a, b) for a, b in zip(fresh, reused, strict=True))
    assert sent[torch.float32].numel() == 16

    received: dict[torch.dtype, torch.Tensor] = {}
    views = [bucket_buffer(received, torch.float32, b["numel"], torch.device("cpu")) for b in plan]
    assert [v.numel() for v in views] == [10, 16, 8]
    assert views[2].data_ptr() == views[1].data_ptr() and received[torch.float32].numel() == 16
    bucket_buffer(received, torch.float32, 8, torch.device("meta"))  # off the CPU: nothing kept
    assert received[torch.float32].numel() == 16 and len(received) == 1
