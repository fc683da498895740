"""BENCH hf_decode_over_generate{,_stops}: the transformers engine's own sampling loop
(rollout/decode.py) against transformers' generate() in the same engine, on the peer bench's
workload: the "small" Qwen2-VL (~15M), 4 colour prompts with their image x n=8, 64 new tokens,
temperature 1, 2 torch threads.

- `hf_decode_over_generate`: every row runs all 64 tokens (no stop token is ever sampled), so
  only the per-token costs differ: the cache written in place, the inverse-CDF draw, the prefill.
- `_stops`: rows stop at different steps, as a learning model's answers do (a token the random
  model samples often is made a stop token): the loop drops finished rows, generate() decodes
  every row until the last one stops.

Both paths alternate, REPEATS calls each after a warm-up; the ratio of the medians (>1: the loop
is faster). `generate_s` is generate()'s median, for scale.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from vrft.rollout.engine import SamplingParams
from vrft.rollout.hf_engine import TransformersEngine
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor
from vrft.testing.synthetic import sample_task
from vrft.testing.tiny_model import make_tiny_model

REPEATS = 5
SAMPLING = SamplingParams(n=8, max_new_tokens=64, temperature=1.0, seed=0)


def medians(engine: TransformersEngine, prompts) -> tuple[float, float]:
    """Median seconds of the own loop and of generate(), called in turn."""
    loop, generate = [], []
    for r in range(REPEATS + 1):
        torch.manual_seed(r)
        start = time.perf_counter()
        engine.generate(prompts, SAMPLING)
        middle = time.perf_counter()
        engine._hf_generate(prompts, SAMPLING)
        if r:  # the first pair warms up
            loop.append(middle - start)
            generate.append(time.perf_counter() - middle)
    return statistics.median(loop), statistics.median(generate)


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        model = str(make_tiny_model(Path(tmp) / "model", size="small"))
        processor = load_processor(model)
        rng = random.Random(0)
        prompts = [build_prompt_inputs(processor, t.problem, [t.image])
                   for t in (sample_task("color", rng) for _ in range(4))]
        engine = TransformersEngine(model, dtype="float32", device="cpu")
        engine.eos_ids = {engine.model.config.get_text_config().vocab_size}  # never sampled
        loop, generate = medians(engine, prompts)
        print(f"BENCH hf_decode_over_generate {generate / loop:.3f} x (generate_s {generate:.3f} s)")
        sampled = Counter(t for g in engine.generate(prompts, SAMPLING) for c in g for t in c.token_ids[8:])
        engine.eos_ids = {sampled.most_common(1)[0][0]}
        loop, generate = medians(engine, prompts)
        lengths = [len(c.token_ids) for g in engine.generate(prompts, SAMPLING) for c in g]
        print(f"BENCH hf_decode_over_generate_stops {generate / loop:.3f} x (generate_s {generate:.3f} s, "
              f"lengths {min(lengths)}-{max(lengths)}, mean {sum(lengths) / len(lengths):.1f})")


if __name__ == "__main__":
    main()
