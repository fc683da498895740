"""The per-micro-batch objectives: GRPO family (composed from learner.algorithms) and SFT.

Both return the micro-batch's *contribution* to the batch loss, normalised by batch-wide counts,
so that summing contributions over micro-batches and ranks gives the loss of the whole batch.
"""

from __future__ import annotations

import torch

from learner.algorithms import (
    aggregate_loss,
    get_kl,
    get_policy_loss,
    masked_mean,
    truncated_is_weights,
)
from learner.config import LearnerConfig


def grpo_objective(logp: torch.Tensor, ref_logp: torch.Tensor | None, batch: dict[str, torch.Tensor],
                   cfg: LearnerConfig, norms: dict[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
    mask = batch["loss_mask"] * batch["weights"][:, None]
    old_logp = logp.detach()  # one update per rollout batch: on-policy
    per_token, stats = get_policy_loss(cfg.policy_loss)(
        logp, old_logp, batch["advantages"], mask, **cfg.policy_loss_options)
    metrics = {k: float(v) for k, v in stats.items()}
    if cfg.is_correction:
        weights, is_stats = truncated_is_weights(logp.detach(), batch["rollout_logprobs"], mask, cfg.is_cap)
        per_token = per_token * weights
        metrics.update({k: float(v) for k, v in is_stats.items()})
    if ref_logp is not None and cfg.beta > 0:
        kl = get_kl(cfg.kl_estimator)(logp, ref_logp)
        per_token = per_token + cfg.beta * kl * mask
        metrics["kl"] = float(masked_mean(kl.detach(), mask)) if mask.sum() > 0 else 0.0
    loss = aggregate_loss(per_token, mask, cfg.loss_agg, global_tokens=norms["tokens"],
                          global_seqs=norms["seqs"], max_len=norms.get("max_len"))
    return loss, metrics


def sft_objective(logp: torch.Tensor, batch: dict[str, torch.Tensor], norms: dict[str, float],
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on the assistant tokens only (Reason-RFT stage 1), token mean over the batch."""
    mask = batch["loss_mask"] * batch["weights"][:, None]
    nll = -(logp * mask)
    return aggregate_loss(nll, mask, "token-mean", global_tokens=norms["tokens"]), {}
