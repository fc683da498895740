"""Engine/learner parity (orchestrator/train/parity.py): the learner's measurement of the gap between its
log-probs and the engine's is the sampling policy's, merged right over micro-batches, ranks and
iterations; `parity/*` is logged every step of a real CPU run and is small there; an engine that
preprocesses images differently from the learner stops the run at start-up in one line."""

from __future__ import annotations

import json
import logging
import math
import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import ray
from PIL import Image

from vrft.learner import LearnerConfig, LearnerGroup, Sample, TrainBatch
from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.core.records import PromptGroup, PromptItem, ScoredCompletion
from vrft.orchestrator.train.parity import (
    ParityError,
    ParityWatch,
    incomparable,
    parity_metrics,
    prompt_differences,
)
from vrft.rollout.engine import Completion
from vrft.rollout.hf_engine import TransformersEngine
from vrft.rollout.inputs import PromptInputs, build_prompt_inputs
from vrft.rollout.processor import load_processor
from vrft.rollout.vllm_inputs import collapse_image_pads

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"
# The test data's images are 56x56 = 3136 pixels, the tiny model's min_pixels: one 4x4 patch grid
# (4 image tokens). An image processor with 4x that minimum upsamples them to an 8x8 grid (16 tokens).
ENGINE_MIN_PIXELS = 4 * 3136


def image_item(processor, row_id: str = "r0") -> PromptItem:
    image = Image.new("RGB", (56, 56), (200, 30, 30))
    return PromptItem(row_id, build_prompt_inputs(processor, "What colour is the square?", [image]), {})


# ---- what differs between the engine's view of a prompt and the learner's ------------------------

def test_prompt_differences_name_each_field_that_differs(tiny_model):
    engine = TransformersEngine(tiny_model)
    processor = load_processor(tiny_model)
    item = image_item(processor)
    assert prompt_differences(engine.prompt_view(item.inputs), item) == []

    upsampled = image_item(load_processor(tiny_model, min_pixels=ENGINE_MIN_PIXELS)).inputs
    found = prompt_differences(engine.prompt_view(upsampled), item)
    assert found[0] == "image placeholder tokens: engine 16, learner 4"
    assert found[1] == "image_grid_thw: engine [[1, 8, 8]], learner [[1, 4, 4]]"
    assert found[2].startswith("pixel_values shape: engine [64, ") and found[3].startswith("token ids:")

    pixels = item.inputs.pixel_values.clone()
    pixels[3, 5] += 0.5  # one value of one patch, as a different resampling filter would move it
    found = prompt_differences(engine.prompt_view(replace(item.inputs, pixel_values=pixels)), item)
    assert found == ["pixel_values: max |difference| 0.5 > 0.02"]
    pixels = item.inputs.pixel_values + 0.01  # what bf16 rounding of normalised pixels stays within
    assert prompt_differences(engine.prompt_view(replace(item.inputs, pixel_values=pixels)), item) == []


# ---- when the two are comparable, and what is logged ------------------------------------------

def groups_of(versions: list[int]) -> list[PromptGroup]:
    item = PromptItem("r0", PromptInputs(input_ids=[1, 2, 3]), {})
    return [PromptGroup(item, [ScoredCompletion(Completion(0, "", [5], [-1.0], "stop", v))]) for v in versions]


LEARNER = {"is/mismatch_kl": 2e-3, "is/logprob_diff_max": 0.3, "loss": 0.1}


@pytest.mark.parametrize(("overrides", "versions", "why"), [
    ([], [4, 4], None),
    (["learner.logprob_temperature=1.0", "rollout.temperature=0.9"], [4, 4], "temperature"),
    (["rollout.engine=vllm", "rollout.top_k=50"], [4, 4], "truncated"),
    ([], [3, 4], "policy version 3 trained at version 4"),
])
def test_parity_is_logged_only_where_comparable(overrides, versions, why):
    cfg = load_config(CONFIG, ["model.path=m", "data.path=d", *overrides])
    groups = groups_of(versions)
    reason = incomparable(cfg, groups, learner_version=4)
    metrics = parity_metrics(cfg, groups, LEARNER, learner_version=4)
    if why is None:
        assert reason is None
        assert metrics == {"parity/logprob_kl": 2e-3, "parity/max_abs_logprob_diff": 0.3}
    else:
        assert why in reason and metrics == {}
    groups[0].kept = False  # a group dynamic sampling dropped is not trained on: its version is no gap
    assert (incomparable(cfg, groups, 4) is None) == (why is None or "version" in why)


def test_start_up_crossing_stops_the_run_later_ones_warn_once(caplog):
    cfg = load_config(CONFIG, ["model.path=m", "data.path=d", "logging.alarms.parity_max_abs_logprob_diff=0.1"])
    with pytest.raises(ParityError) as stopped:
        ParityWatch(cfg).check_step(1, {"parity/logprob_kl": 0.5, "parity/max_abs_logprob_diff": 0.01}, None)
    message = str(stopped.value)
    assert "\n" not in message and "parity/logprob_kl = 0.5 > logging.alarms.parity_logprob_kl = 0.02" in message

    watch = ParityWatch(cfg)
    watch.check_step(1, {"parity/logprob_kl": 1e-3}, "async")  # not comparable: not the start-up check
    watch.check_step(2, {}, None)  # nothing trained
    watch.check_step(3, {"parity/logprob_kl": 1e-3, "parity/max_abs_logprob_diff": 0.05}, None)  # start-up: fine
    with caplog.at_level(logging.WARNING, logger="vrft"):
        for step in (4, 5):
            watch.check_step(step, {"parity/logprob_kl": math.nan, "parity/max_abs_logprob_diff": 0.05}, None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "parity/logprob_kl = nan" in warnings[0] and "step 4" in warnings[0]


# ---- the learner's measurement: the sampling policy's, over micro-batches, ranks, iterations --------

def test_learner_measures_the_sampling_policy_merged_over_ranks_and_iterations(ray_cluster, tiny_model):
    """The rollout log-probs are the learner's own (computed before any update) shifted by known
    offsets d, so KL = mean(e^d - d - 1) and max |d| are known exactly. A 2-rank learner making two
    updates on the batch (lr 1e-2: the second iteration's policy has moved), is_correction off, must
    report them: rank results weighted by their unequal token counts, every iteration against the
    log-probs of the policy that sampled."""
    pad = load_processor(tiny_model).tokenizer.pad_token_id
    rng = random.Random(0)
    lengths = [12, 13, 2, 3, 2, 2]  # one rank gets 25 completion tokens, the other 9
    samples = [Sample(prompt_ids=[rng.randrange(10, 300) for _ in range(6)],
                      completion_ids=[rng.randrange(10, 300) for _ in range(n)],
                      group_id=i // 3, reward=float(i % 3)) for i, n in enumerate(lengths)]
    cfg = LearnerConfig(world_size=2, num_iterations=2, lr=1e-2, beta=0.0, micro_batch_size=2, torch_threads=1,
                        is_correction=False)
    group = LearnerGroup(tiny_model, cfg, total_steps=2, pad_id=pad)
    try:
        learner = group.logprobs(samples)
        offsets = [[0.06 * i + 0.05 * ((t % 5) - 2) for t in range(len(lp))] for i, lp in enumerate(learner)]
        for s, lp, d in zip(samples, learner, offsets, strict=True):
            s.rollout_logprobs = [x - y for x, y in zip(lp, d, strict=True)]  # learner - engine = d
        flat = [y for d in offsets for y in d]
        kl = sum(math.exp(y) - y - 1 for y in flat) / len(flat)
        assert kl > 1e-3  # far above fp32 noise: a wrong weighting or policy shows
        metrics = group.train_step(TrainBatch(samples))
    finally:
        group.shutdown()
    assert metrics["micro_batches"] == 3.0  # 2 on one rank, 1 (and a filler) on the other
    assert metrics["is/mismatch_kl"] == pytest.approx(kl, rel=1e-3)
    assert metrics["is/logprob_diff_max"] == pytest.approx(max(abs(y) for y in flat), abs=1e-5)


# ---- real CPU runs -------------------------------------------------------------------------------

def step_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "step" in r and not r.get("summary")]


def test_cpu_run_logs_small_parity_every_step(ray_cluster, tiny_model, color_data, tmp_path, caplog):
    """2 engines, a 2-rank learner, fp32 on both sides, the weights synced exactly every step: the
    learner's log-probs of the sampled tokens differ from the engine's only by summation order
    (cached decoding against one full forward), |d| ~1e-6 (the learner integration test bounds it by
    1e-5); k3 = e^d - d - 1 is then ~d^2/2 ~1e-12, under its own fp32 rounding (ulp(1) = 1.2e-7)."""
    from vrft.orchestrator.train.loop import train

    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "logging.rollouts_every=0"])
    with caplog.at_level(logging.INFO, logger="vrft"):
        train(cfg, tmp_path)
    steps = step_records(tmp_path)
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:
        assert r["parity/max_abs_logprob_diff"] < 1e-5, r["parity/max_abs_logprob_diff"]
        assert abs(r["parity/logprob_kl"]) < 1e-6, r["parity/logprob_kl"]
    assert "parity at start-up (step 1): parity/logprob_kl" in caplog.text


def preprocess_own_images(worker, model_path: str, min_pixels: int) -> None:
    """Run inside a rollout worker: its engine now preprocesses each prompt's raw images itself with
    its own image processor, as vLLM does with `mm_processor_kwargs` (here with a min_pixels the
    learner's processor does not have), and re-expands the image placeholders to match."""
    worker.engine.__class__ = OwnImagesEngine
    worker.engine.own_processor = load_processor(model_path, min_pixels=min_pixels).image_processor


class OwnImagesEngine(TransformersEngine):
    own_processor = None

    def _collate(self, prompts, repeat):
        return super()._collate([self._own(p) for p in prompts], repeat)

    def _own(self, prompt: PromptInputs) -> PromptInputs:
        if not prompt.images:
            return prompt
        encoded = self.own_processor(images=prompt.images, return_tensors="pt")
        grid = encoded["image_grid_thw"]
        pads = iter((grid.prod(-1) // self.own_processor.merge_size ** 2).tolist())
        image = self.model.config.image_token_id
        ids = [t for tok in collapse_image_pads(prompt.input_ids, image)
               for t in ([tok] * next(pads) if tok == image else [tok])]
        return PromptInputs(ids, encoded["pixel_values"].float(), grid.long(), [int(t == image) for t in ids],
                            prompt.images)


def test_engine_preprocessing_images_differently_stops_the_run_at_start_up(ray_cluster, tiny_model, color_data,
                                                                           tmp_path, monkeypatch):
    import vrft.orchestrator.train.loop as loop

    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=2",
                               "rollout.num_workers=1", "learner.world_size=1", "verifier.num_actors=1",
                               "logging.wandb=false", "logging.rollouts_every=0"])
    start_actors = loop.start_actors

    def start_with_own_images(*args, **kwargs):
        actors = start_actors(*args, **kwargs)
        ray.get([w.__ray_call__.remote(preprocess_own_images, tiny_model, ENGINE_MIN_PIXELS)
                 for w in actors.workers])
        return actors

    monkeypatch.setattr(loop, "start_actors", start_with_own_images)
    # This module is not importable in the actors: send its engine class and function by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with pytest.raises(ParityError) as stopped:
            loop.train(cfg, tmp_path)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    message = str(stopped.value)
    assert "\n" not in message, message
    assert message.startswith("engine/learner parity at start-up: rollout worker 0 and the learner see "
                              "different inputs for the prompt of row "), message
    assert "image placeholder tokens: engine 16, learner 4; image_grid_thw: engine [[1, 8, 8]], learner " \
           "[[1, 4, 4]]" in message
    assert step_records(tmp_path) == []  # stopped before the first step's record: nothing trained on
