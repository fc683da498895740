"""After a learner step and a weight sync (learner/transfer.py driving the workers through
rollout/client.py, gloo on CPU), every rollout worker scores a fixed sequence exactly as the
learner does (within 1e-5) and reports the learner's policy version; a worker whose update fails is
refused for sampling."""

from __future__ import annotations

import pytest
import ray
import torch

from vrft.learner import LearnerConfig, LearnerGroup, Sample, TrainBatch
from vrft.learner.lora import plain_entries
from vrft.learner.weight_sync import iter_buckets, make_plan
from vrft.orchestrator.data.sources import decode_image, load_task_dataset
from vrft.rollout.client import UpdateFailed, WorkerClient
from vrft.rollout.engine import SamplingParams
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import banned_token_ids, load_processor
from vrft.rollout.weight_sync import bucket_buffer
from vrft.rollout.worker import RolloutWorker


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_broadcast_makes_workers_match_learner(ray_cluster, tiny_model, color_data, zero_stage):
    processor = load_processor(tiny_model)
    row = next(r for r in load_task_dataset(color_data) if decode_image(r["image"]) is not None)
    prompt = build_prompt_inputs(processor, row["problem"], [decode_image(row["image"])])
    workers = [RolloutWorker.options(num_cpus=1).remote("hf", tiny_model, {}, 1) for _ in range(2)]
    # The engine's log-probs leave the banned tokens out of the normaliser: the learner's too.
    cfg = LearnerConfig(world_size=2, zero_stage=zero_stage, lr=1e-2, torch_threads=1,
                        banned_token_ids=banned_token_ids(processor.tokenizer))
    learner = LearnerGroup(tiny_model, cfg, total_steps=1, pad_id=processor.tokenizer.pad_token_id)
    try:
        options = {"engine": "hf", "bucket_mb": 0.05, "timeout_s": 60.0, "world_size": 3,
                   "endpoint": learner.sync_endpoint()}
        learner.init_weight_transfer("gloo", WorkerClient(workers, [1, 2]), options, timeout_s=120)
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
            stats = learner.send_weights(version, timeout_s=120)
            assert stats["buckets"] == len(plan) and stats["bytes"] == 4 * sum(b["numel"] for b in plan)
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


def test_a_failed_update_is_named_and_the_engine_never_samples_again(ray_cluster, tiny_model, color_data):
    """A worker whose update fails midway (here: it never joined a transfer) comes back as
    UpdateFailed naming it, alive; its engine then refuses to sample (its weights may be
    half-updated), while a worker whose update finished serves at the new version."""
    processor = load_processor(tiny_model)
    row = next(r for r in load_task_dataset(color_data) if decode_image(r["image"]) is not None)
    prompt = build_prompt_inputs(processor, row["problem"], [decode_image(row["image"])])
    workers = [RolloutWorker.options(num_cpus=0.5).remote("hf", tiny_model, {}, 1) for _ in range(2)]
    sampling = SamplingParams(n=1, max_new_tokens=2, seed=0)
    try:
        WorkerClient(workers, [1, 2]).start_weight_update()
        plan = [{"dtype": "float32", "numel": 4, "entries": [("lm_head.weight", [4])]}]
        with pytest.raises(UpdateFailed) as failed:
            WorkerClient(workers[:1], [1]).update_weights({"plan": plan})
        assert failed.value.failures == {0: (False, "RuntimeError: weight sync: update_weights before "
                                                    "init_weight_transfer_engine")}
        assert not failed.value.died and str(failed.value).startswith("rollout worker 0: RuntimeError")
        with pytest.raises(ray.exceptions.RayTaskError, match="half-updated"):
            ray.get(workers[0].generate.remote([prompt], sampling))
        assert ray.get(workers[1].finish_weight_update.remote(1)) == 1
        groups, _ = ray.get(workers[1].generate.remote([prompt], sampling))
        assert groups[0][0].policy_version == 1
    finally:
        for w in workers:
            ray.kill(w)
