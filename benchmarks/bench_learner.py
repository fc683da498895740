"""BENCH learner_tokens_per_s_{budget,padded}: one GRPO learner step (a real DeepSpeed rank on Ray)
on a batch whose response lengths vary 8x, with and without token-budget micro-batching.

The same 32 samples (4 prompts x G=8, responses of 32..256 tokens, log-uniformly spread, in mixed order), the same model
(the offline "small" Qwen2-VL, ~15M parameters), the same algorithm (Visual-RFT's GRPO loss with a
k3 KL to a reference copy) and one optimizer step per measured call in both modes:

- padded: `token_budget: null`, `micro_batch_size: 8`: the batch is cut in its given order and each
  micro-batch is padded to its longest sequence;
- budget: `token_budget` = 8 x the longest sequence (the padded mode's largest micro-batch, so the
  same peak activation memory), samples sorted by length first.

Tokens/s counts real tokens (prompt + completion, no padding) over the step's wall time. Both
learners are up at once and stepped in turn (one warm-up step each, then the median of 3), so a
shared machine's changing load does not favour one of them.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

import ray

from vrft.learner import LearnerConfig, LearnerGroup, Sample, TrainBatch
from vrft.learner.batch import split_micro_batches
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor, vision_special_token_ids
from vrft.testing.synthetic import sample_task
from vrft.testing.tiny_model import make_tiny_model

PROMPTS, G = 4, 8
MIN_RESPONSE, MAX_RESPONSE = 32, 256  # 8x
PADDED_MICRO_BATCH = 8
REPEATS = 3
# One torch thread per rank: steadier than two on a small CPU shared with other processes.
THREADS = 1


def build_batch(model_path: str, seed: int = 0) -> tuple[list[Sample], int]:
    processor = load_processor(model_path)
    rng = random.Random(seed)
    n = PROMPTS * G
    # Log-uniformly spread lengths (more short answers than long ones, as sampled responses are),
    # shuffled: every micro-batch cut in order holds short and long responses.
    lengths = [round(MIN_RESPONSE * (MAX_RESPONSE / MIN_RESPONSE) ** (i / (n - 1))) for i in range(n)]
    rng.shuffle(lengths)
    tokenizer = processor.tokenizer
    special = set(tokenizer.all_special_ids) | set(vision_special_token_ids(tokenizer))
    vocab = [i for i in range(tokenizer.vocab_size) if i not in special]  # no image placeholders
    samples = []
    for p in range(PROMPTS):
        task = sample_task("color", rng)
        prompt = build_prompt_inputs(processor, task.problem, [task.image])
        for g in range(G):
            length = lengths[p * G + g]
            samples.append(Sample(prompt_ids=prompt.input_ids,
                                  completion_ids=rng.choices(vocab, k=length),
                                  reward=rng.choice([0.0, 1.0]), group_id=p,
                                  pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw,
                                  prompt_mm_token_type_ids=prompt.mm_token_type_ids))
    return samples, processor.tokenizer.pad_token_id


def padded_tokens(micro: list[list[Sample]]) -> int:
    return sum(len(m) * max(s.length for s in m) for m in micro)


def measure(model_path: str, samples: list[Sample], pad_id: int,
            configs: dict[str, LearnerConfig]) -> dict[str, float]:
    """Median seconds of one learner step per config: one warm-up step each, then REPEATS rounds
    that step every config in turn, so a load change on a shared machine hits all of them alike."""
    groups = {}
    try:
        for name, cfg in configs.items():
            groups[name] = LearnerGroup(model_path, cfg, total_steps=REPEATS + 1, pad_id=pad_id)
        seconds: dict[str, list[float]] = {name: [] for name in configs}
        for group in groups.values():
            group.train_step(TrainBatch(samples))
        for _ in range(REPEATS):
            for name, group in groups.items():
                start = time.perf_counter()
                group.train_step(TrainBatch(samples))
                seconds[name].append(time.perf_counter() - start)
    finally:
        for group in groups.values():
            group.shutdown()
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = str(make_tiny_model(Path(tmp) / "model", size="small"))
        samples, pad_id = build_batch(model)
        real = sum(s.length for s in samples)
        longest = max(s.length for s in samples)
        common = dict(world_size=1, zero_stage=2, lr=1e-6, torch_threads=THREADS, num_cpus_per_rank=1)
        configs = {
            "padded": LearnerConfig(micro_batch_size=PADDED_MICRO_BATCH, token_budget=None, **common),
            "budget": LearnerConfig(micro_batch_size=len(samples), token_budget=PADDED_MICRO_BATCH * longest,
                                    **common),
        }
        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            seconds = measure(model, samples, pad_id, configs)
        finally:
            if started:
                ray.shutdown()
        rate = {}
        for name, cfg in configs.items():
            micro = split_micro_batches(samples, cfg.micro_batch_size, cfg.token_budget)
            rate[name] = real / seconds[name]
            print(f"# {name}: {len(micro)} micro-batches, {padded_tokens(micro)} padded tokens for "
                  f"{real} real, {seconds[name]:.3f} s/step")
    print(f"BENCH learner_tokens_per_s_budget {rate['budget']:.1f} tokens/s")
    print(f"BENCH learner_tokens_per_s_padded {rate['padded']:.1f} tokens/s")
    print(f"BENCH learner_budget_speedup {rate['budget'] / rate['padded']:.3f} x")


if __name__ == "__main__":
    main()
