"""vrft verifiers: the rewards of Visual-RFT and Reason-RFT, their weighted composition, a Ray pool of
verifier actors with hard per-completion timeouts, and the papers' evaluation metrics.

This package imports nothing else of the project. See docs/verifiers.md.

- ``get_reward(name, **options)`` → ``fn(completion, ground_truth) -> float``; ``list_rewards()``;
  a name ``"package.module:function"`` loads a user reward.
- ``RewardSpec``, ``CompositeReward(specs)`` → ``{component: score, ..., "total": weighted sum}``.
- ``VerifierPool(specs, num_actors=2, timeout_s=5.0)``: ``submit``/``gather``/``stats``/``shutdown``
  (imports Ray on first use).
- ``vrft.verifiers.evaluation``: the papers' benchmarks, each one record holding its whole protocol,
  and the one definition of each metric. The reward code never imports it (tests/test_layers.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vrft.verifiers.composite import CompositeReward, RewardSpec, component_keys
from vrft.verifiers.registry import get_reward, list_rewards, reward_info

if TYPE_CHECKING:
    from vrft.verifiers.pool import VerifierPool

__all__ = [
    "CompositeReward",
    "RewardSpec",
    "VerifierPool",
    "component_keys",
    "get_reward",
    "list_rewards",
    "reward_info",
]


def __getattr__(name: str) -> Any:
    # The pool needs Ray (a second to import); scoring processes import this package and must not.
    if name == "VerifierPool":
        from vrft.verifiers.pool import VerifierPool

        return VerifierPool
    raise AttributeError(f"module 'verifiers' has no attribute {name!r}")
