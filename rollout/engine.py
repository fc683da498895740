"""The engine interface every rollout backend implements (transformers here, vLLM in vllm_engine.py).

An engine samples G completions per prompt and returns, for each, the token ids, the per-token
log-probabilities under the sampling distribution before top-k/top-p (log_softmax(logits / T)), the
finish reason and the policy version of the weights that produced it. The learner computes its own
log-probs the same way, so the two can be compared token by token (importance-sampling correction,
and the weight-sync test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from vrft.rollout.inputs import PromptInputs

if TYPE_CHECKING:
    from vrft.rollout.turns import Trajectory


@dataclass(frozen=True)
class SamplingParams:
    n: int = 4
    temperature: float = 1.0  # 0: greedy decoding (log-probs then at temperature 1)
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 64
    seed: int | None = None


@dataclass
class Completion:
    """One sampled response. `generate` returns them grouped per prompt, in prompt order."""
    sample_index: int  # 0..n-1 within its group
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (eos) or "length"
    policy_version: int
    # A multi-turn completion with tools (rollout/turns.py): then `token_ids` holds the model's turns
    # and the observations between them, `text` is the last turn's (the answer), and the trajectory
    # has the mask that tells them apart, the observations' images and every turn.
    trajectory: Trajectory | None = None


class Engine(Protocol):
    """What `RolloutWorker` calls. Weight sync is the engine's own business: the transformers engine
    receives buckets in its own process (`vrft.rollout.weight_sync.WeightReceiver`), vLLM in its workers
    through vLLM's weight-transfer engines (rollout/vllm_engine.py)."""
    policy_version: int
    sync_world_size: int  # ranks this engine takes in the weight-sync group (vLLM: one per TP worker)

    def generate(self, prompts: list[PromptInputs], sampling: SamplingParams) -> list[list[Completion]]:
        """One list of `sampling.n` completions per prompt, in prompt order."""

    def score(self, prompt: PromptInputs, token_ids: list[int], temperature: float = 1.0) -> list[float]:
        """Teacher-forced per-token log-probs of `token_ids` after `prompt` (for checks and IS)."""

    def load_weights(self, named_tensors: dict[str, Any], version: int) -> None:
        """Load the tensors given (transformers names) in place, as `version`: tests, small models."""

    # Weight sync: the four calls of vLLM's weight-sync client protocol, driven by learner rank 0
    # (learner/transfer.py) through the orchestrator's fan-out (rollout/client.py).
    def init_weight_transfer_engine(self, init_info: dict) -> None:
        """Join the learner's transfer: `backend`, and for gloo/nccl the rendezvous (`master_address`,
        `master_port`, `world_size`, this engine's first rank `rank_offset`, `timeout_s`)."""

    def start_weight_update(self) -> None:
        """From here until `finish_weight_update` the engine refuses to sample."""

    def update_weights(self, update_info: dict) -> None:
        """Receive and load one payload of the update (a plan's buckets, or an IPC bucket)."""

    def finish_weight_update(self, weight_version: int) -> int:
        """Make the update live as `weight_version` (caches of the old weights dropped); returns it.
        An engine whose update failed is never sampled from again: the orchestrator replaces it."""

    def sleep(self) -> None: ...

    def wake_up(self) -> None: ...
