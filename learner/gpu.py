"""What a learner rank does to the CUDA runtime beyond DeepSpeed: no TF32 when it computes in
fp32, and its cached memory handed back after each step (a colocated engine wakes into it).
Both take the torch module they act on, so tests can pass a fake."""

from __future__ import annotations

import torch


def strict_fp32(backends=torch.backends) -> None:
    """fp32 matmuls and convolutions in full fp32 precision, not TF32 (cuDNN convolutions use TF32
    by default in torch 2.13; the Qwen-VL patch embedding is a Conv3d): an fp32 learner is the
    reference the engines' log-probs are compared against."""
    backends.cuda.matmul.allow_tf32 = False
    backends.cudnn.allow_tf32 = False


def release_cached_memory(cuda=torch.cuda) -> bool:
    """Hand the caching allocator's unused blocks back to the driver; whether there was a GPU.
    Without it the learner keeps its training peak reserved, and a colocated vLLM engine waking up
    after the step finds that memory taken (docs/gpu-recipe.md)."""
    if not cuda.is_available():
        return False
    cuda.empty_cache()
    return True
