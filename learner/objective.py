"""The per-micro-batch objectives: the GRPO family (composed from vrft.learner.algorithms) and SFT.

Both return the micro-batch's *contribution* to the batch loss, normalised by batch-wide counts,
so that summing contributions over micro-batches and ranks gives the loss of the whole batch.
Metric names ending in `_max` are maxima (merged by max); the others are token-weighted means.
"""

from __future__ import annotations

import torch

from vrft.learner.algorithms import (
    aggregate_loss,
    get_kl,
    get_policy_loss,
    masked_mean,
    truncated_is_weights,
)
from vrft.learner.config import LearnerConfig


def _masked_abs_max(x: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask > 0
    return float(x.detach().abs()[m].max()) if bool(m.any()) else 0.0


def grpo_objective(logp: torch.Tensor, batch: dict[str, torch.Tensor], cfg: LearnerConfig,
                   norms: dict[str, float], *, old_logp: torch.Tensor | None = None,
                   ref_logp: torch.Tensor | None = None, entropy: torch.Tensor | None = None,
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """`old_logp`: the learner's log-probs before this batch's first update (None: on-policy,
    the current ones detached). `ref_logp`: the reference's (None when β = 0 or the KL is in the
    reward). `entropy`: per-token entropies (with a graph if the bonus is on)."""
    mask = batch["loss_mask"] * batch["weights"][:, None]
    behaviour = logp.detach() if old_logp is None else old_logp
    per_token, stats = get_policy_loss(cfg.policy_loss)(
        logp, behaviour, batch["advantages"], mask, **cfg.policy_loss_options)
    metrics = {k: float(v) for k, v in stats.items()}
    if "rollout_logprobs" in batch:
        # The engine sampled from pi_rollout; the learner's pi_old should be the same policy. The
        # mismatch (kernels, precision, staleness in async mode) is always logged, and corrected
        # with truncated importance weights on the policy-gradient term if asked.
        weights, is_stats = truncated_is_weights(behaviour, batch["rollout_logprobs"], mask, cfg.is_cap)
        metrics.update({k: float(v) for k, v in is_stats.items()})
        metrics["is/logprob_diff_max"] = _masked_abs_max(behaviour - batch["rollout_logprobs"], mask)
        if cfg.is_correction:
            per_token = per_token * weights
    elif cfg.is_correction:
        raise ValueError("learner.is_correction needs the rollout engine's log-probs on every sample")
    if ref_logp is not None and cfg.beta > 0 and not cfg.kl_in_reward:
        kl = get_kl(cfg.kl_estimator)(logp, ref_logp)
        per_token = per_token + cfg.beta * kl
        metrics["kl"] = float(masked_mean(kl.detach(), mask))
    if entropy is not None:
        metrics["entropy"] = float(masked_mean(entropy.detach(), mask))
        if cfg.entropy_coef > 0:
            per_token = per_token - cfg.entropy_coef * entropy
    loss = aggregate_loss(per_token, mask, cfg.loss_agg, global_tokens=norms["tokens"],
                          global_seqs=norms["seqs"], max_len=norms.get("max_len"))
    return loss, metrics


def sequence_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, estimator: str,
                ) -> torch.Tensor:
    """Σ_t KL_t over each completion's tokens: the per-sample KL that `kl_in_reward` charges."""
    kl = get_kl(estimator)(logp, ref_logp)
    return (kl * mask).sum(-1)


def sft_objective(logp: torch.Tensor, batch: dict[str, torch.Tensor], norms: dict[str, float],
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on the assistant tokens only (Reason-RFT stage 1), token mean over the batch."""
    mask = batch["loss_mask"] * batch["weights"][:, None]
    nll = -(logp * mask)
    return aggregate_loss(nll, mask, "token-mean", global_tokens=norms["tokens"]), {}
