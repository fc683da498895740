"""BENCH adamw_fused_over_default: the learner's optimizer step (learner/worker.py: torch's AdamW
with `fused=True`) against torch's default AdamW (the `foreach` implementation), on the
parameters of the peer bench's model (the "small" Qwen2-VL, ~12M trainable) with random
gradients, 2 torch threads. Both optimizers step in turn, REPEATS times after a warm-up; the ratio
of the medians (>1: fused is faster). `adamw_fused_step_ms` is the fused step's median.

The two give the same update up to rounding (checked here after the runs: max |Δ| of a weight).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText

from vrft.testing.tiny_model import make_tiny_model

REPEATS = 20


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_model(Path(tmp) / "model", size="small")
        models = {kind: AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
                  for kind in ("default", "fused")}
    optimizers = {kind: torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01,
                                          fused=kind == "fused")
                  for kind, model in models.items()}
    for model in models.values():
        torch.manual_seed(0)  # the same gradients on both sides
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
    times: dict[str, list[float]] = {kind: [] for kind in models}
    for r in range(REPEATS + 1):
        for kind, optimizer in optimizers.items():
            start = time.perf_counter()
            optimizer.step()
            if r:  # the first round warms up (state allocation)
                times[kind].append(time.perf_counter() - start)
    default, fused = (statistics.median(times[k]) for k in ("default", "fused"))
    drift = max(float((a - b).detach().abs().max()) for a, b in zip(models["default"].parameters(),
                                                            models["fused"].parameters(), strict=True))
    params = sum(p.numel() for p in models["fused"].parameters())
    print(f"BENCH adamw_fused_over_default {default / fused:.2f} x")
    print(f"BENCH adamw_fused_step_ms {fused * 1e3:.1f} ms")
    print(f"# adamw: default {default * 1e3:.1f} ms, fused {fused * 1e3:.1f} ms over {params / 1e6:.1f}M "
          f"parameters; max |weight difference| after {REPEATS + 1} steps {drift:.1e}")


if __name__ == "__main__":
    main()
