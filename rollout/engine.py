"""The engine interface every rollout backend implements (transformers here, vLLM in vllm_engine.py).

An engine samples G completions per prompt and returns, for each, the token ids, the per-token
log-probabilities under the sampling distribution before top-k/top-p (log_softmax(logits / T)), the
finish reason and the policy version of the weights that produced it. The learner computes its own
log-probs the same way, so the two can be compared token by token (importance-sampling correction,
and the weight-sync test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from rollout.inputs import PromptInputs


@dataclass(frozen=True)
class SamplingParams:
    n: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 64
    seed: int | None = None


@dataclass
class Completion:
    prompt_index: int  # index of the prompt in the request list it came from
    sample_index: int  # 0..n-1 within its group
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (eos) or "length"
    policy_version: int
    meta: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    policy_version: int

    def generate(self, prompts: list[PromptInputs], sampling: SamplingParams) -> list[list[Completion]]:
        """One list of `sampling.n` completions per prompt, in prompt order."""

    def score(self, prompt: PromptInputs, token_ids: list[int], temperature: float = 1.0) -> list[float]:
        """Teacher-forced per-token log-probs of `token_ids` after `prompt` (for checks and IS)."""

    def update_weights(self, named_tensors: dict[str, Any], version: int) -> None:
        """Load new weights in place (names as the transformers model's named_parameters)."""

    def sleep(self) -> None: ...

    def wake_up(self) -> None: ...
