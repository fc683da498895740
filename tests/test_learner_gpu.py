"""The learner's two CUDA settings (learner/gpu.py), on fakes of the torch modules they act on:
the GPU itself is exercised only by benchmarks/gpu_check.py."""

from __future__ import annotations

from types import SimpleNamespace

from vrft.learner.gpu import release_cached_memory, strict_fp32


def test_cached_memory_is_handed_back_only_where_there_is_a_gpu():
    calls = []
    gpu = SimpleNamespace(is_available=lambda: True, empty_cache=lambda: calls.append("empty_cache"))
    assert release_cached_memory(gpu) and calls == ["empty_cache"]
    none = SimpleNamespace(is_available=lambda: False, empty_cache=lambda: calls.append("nothing to empty"))
    assert not release_cached_memory(none) and calls == ["empty_cache"]


def test_fp32_learner_turns_tf32_off_for_matmuls_and_convolutions():
    backends = SimpleNamespace(cuda=SimpleNamespace(matmul=SimpleNamespace(allow_tf32=True)),
                               cudnn=SimpleNamespace(allow_tf32=True))  # cuDNN's default in torch 2.13
    strict_fp32(backends)
    assert backends.cuda.matmul.allow_tf32 is False and backends.cudnn.allow_tf32 is False
