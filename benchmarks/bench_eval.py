"""Evaluation throughput of `vrft eval`'s inference path: queries per second of the transformers
engine on CPU (Ray actors, the small offline model), per benchmark kind and batch size.

Same model, same queries, same decoding for every figure; only the batch size (queries per engine
call) changes, so the ratio batch 8 / batch 1 is the batching gain on this machine. Tokens are
capped at 32 (the protocols' 768-1024 would take minutes on 2 cores and measure the same thing).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import ray

from vrft.orchestrator.config.schema import EvalSpec
from vrft.orchestrator.evaluation.driver import generate, load_eval_set
from vrft.rollout.processor import load_processor
from vrft.rollout.worker import RolloutWorker
from vrft.testing.released import make_lisa_grounding, make_reason_rft_counting
from vrft.testing.tiny_model import make_tiny_model

QUERIES = 16
MAX_NEW = 32


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    model = str(make_tiny_model(root / "model", size="small"))
    sets = {"clevr_math": load_eval_set(EvalSpec(benchmark="clevr_math",
                                                 data=str(make_reason_rft_counting(root / "counting", n=QUERIES)))),
            "lisa_test": load_eval_set(EvalSpec(benchmark="lisa_test",
                                                data=str(make_lisa_grounding(root / "lisa", n=QUERIES))))}
    processor = load_processor(model, None, None)
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        worker = RolloutWorker.options(num_cpus=1).remote("hf", model, {"max_batch_size": 64}, None)
        ray.get(worker.ready.remote())
        for name, eval_set in sets.items():
            rates = {}
            for batch in (1, 8):
                generate([worker], processor, eval_set, batch_size=batch, progress=False,
                         max_new_tokens=MAX_NEW)  # warm-up: first-call allocations
                start = time.perf_counter()
                generate([worker], processor, eval_set, batch_size=batch, progress=False, max_new_tokens=MAX_NEW)
                rates[batch] = len(eval_set.queries) / (time.perf_counter() - start)
                print(f"BENCH eval_{name}_queries_per_s_batch{batch} {rates[batch]:.2f} queries/s", flush=True)
            print(f"BENCH eval_{name}_batch8_over_batch1 {rates[8] / rates[1]:.2f} x", flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
