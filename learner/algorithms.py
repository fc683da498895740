"""The GRPO family as small pure functions on torch tensors, registered by name.

This is the single import surface: everything below (and the policy losses, aggregation and
logprob helpers implemented in :mod:`vrft.learner.losses`) is importable from ``vrft.learner.algorithms``.
The learner composes them; there is deliberately no all-in-one ``grpo_loss``. A Visual-RFT step::

    adv = get_advantage("grpo")(rewards, group_ids)                          # [N]
    pg, metrics = get_policy_loss("visual_rft")(logp, None, adv, mask)       # [B, T]
    per_token = pg + beta * get_kl("k3")(logp, ref_logp)
    loss = aggregate_loss(per_token, mask, "seq-mean-token-mean", global_seqs=n_seqs)

Registries (unknown names raise a one-line ValueError listing the valid ones):

- advantages ``fn(rewards [N] float, group_ids [N] int, **opts) -> [N]``: "grpo", "rloo",
  "reinforce_pp_baseline". Groups are defined by ``group_ids`` only, never by position: the
  Reason-RFT code mixes tiled and interleaved orders, which silently mis-groups when a device
  holds more than one prompt.
- KL estimators ``fn(logp, ref_logp) -> per-token``: "k1", "k2", "k3" (Schulman 2020).
- policy losses ``fn(logp, old_logp, advantages, mask, **opts) -> (per_token [B, T], metrics)``:
  "visual_rft", "ppo_clip", "dual_clip".

The formulas, papers and defaults are tabulated in ``docs/algorithms.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from vrft.learner.losses import (
    AGG_MODES,
    LOG_RATIO_CLAMP,
    PolicyLossFn,
    _bool_mask,
    _check_same_shape,
    _Registry,
    aggregate_loss,
    dual_clip_loss,
    entropy_from_logits,
    get_policy_loss,
    list_policy_losses,
    masked_mean,
    masked_sum,
    ppo_clip_loss,
    register_policy_loss,
    token_logprobs_from_logits,
    visual_rft_loss,
)

__all__ = [
    "AGG_MODES",
    "LOG_RATIO_CLAMP",
    "AdvantageFn",
    "KLFn",
    "PolicyLossFn",
    "aggregate_loss",
    "dual_clip_loss",
    "dynamic_sampling_mask",
    "entropy_from_logits",
    "get_advantage",
    "get_kl",
    "get_policy_loss",
    "grpo_advantage",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "list_advantages",
    "list_kls",
    "list_policy_losses",
    "masked_mean",
    "masked_sum",
    "overlong_penalty",
    "ppo_clip_loss",
    "register_advantage",
    "register_kl",
    "register_policy_loss",
    "reinforce_pp_baseline_advantage",
    "rloo_advantage",
    "token_logprobs_from_logits",
    "truncated_is_weights",
    "truncation_mask",
    "visual_rft_loss",
]

AdvantageFn = Callable[..., Tensor]
KLFn = Callable[[Tensor, Tensor], Tensor]

_ADVANTAGES = _Registry("advantage estimator")
_KLS = _Registry("KL estimator")


def register_advantage(name: str) -> Callable[[AdvantageFn], AdvantageFn]:
    """Decorator: register ``fn(rewards, group_ids, **opts) -> advantages`` under ``name``."""
    return _ADVANTAGES.register(name)


def get_advantage(name: str) -> AdvantageFn:
    return _ADVANTAGES.get(name)


def list_advantages() -> list[str]:
    return _ADVANTAGES.names()


def register_kl(name: str) -> Callable[[KLFn], KLFn]:
    """Decorator: register a per-token KL estimator ``fn(logp, ref_logp)`` under ``name``."""
    return _KLS.register(name)


def get_kl(name: str) -> KLFn:
    return _KLS.get(name)


def list_kls() -> list[str]:
    return _KLS.names()


# ----------------------------------------------------------------------------------------------
# group statistics
# ----------------------------------------------------------------------------------------------
def _grouped(where: str, rewards: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Validate; return (rewards as >= float32, group index per sample, group sizes, group means)."""
    if rewards.dim() != 1 or not rewards.is_floating_point():
        raise ValueError(
            f"{where}: rewards must be a 1-D float tensor, got {rewards.dtype} {tuple(rewards.shape)}"
        )
    if group_ids.dim() != 1 or group_ids.is_floating_point() or group_ids.dtype == torch.bool:
        raise ValueError(f"{where}: group_ids must be a 1-D integer tensor, got {group_ids.dtype}")
    _check_same_shape(where, rewards=rewards, group_ids=group_ids)
    # A NaN reward would silently poison every advantage of its group (and with batch scaling,
    # the whole batch); the verifiers are supposed to return finite floats, so fail loudly.
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError(f"{where}: rewards contain NaN or inf")
    r = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    _, idx = torch.unique(group_ids, return_inverse=True)
    n_groups = int(idx.max()) + 1 if idx.numel() else 0
    sizes = torch.bincount(idx, minlength=n_groups).to(r.dtype)
    means = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, idx, r) / sizes
    return r, idx, sizes, means


# ----------------------------------------------------------------------------------------------
# advantages
# ----------------------------------------------------------------------------------------------
@register_advantage("grpo")
def grpo_advantage(rewards: Tensor, group_ids: Tensor, *, scale: str = "std", eps: float = 1e-4) -> Tensor:
    """GRPO group-relative advantage (Shao et al. 2024, DeepSeekMath; as in Visual-RFT / Reason-RFT).

    ``scale="std"``:  ``A_i = (r_i - mean_g) / (std_g + eps)``, ``std_g`` torch's unbiased
    (n - 1) std over the group, ``eps = 1e-4`` exactly as the Visual-RFT code.
    ``scale="none"``: Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"):
    ``A_i = r_i - mean_g``; dividing by the std over-weights groups that are nearly all right or
    all wrong. A group of one sample has advantage 0 (its std would be NaN).
    """
    if scale not in ("std", "none"):
        raise ValueError(f"grpo: scale must be 'std' or 'none', got '{scale}'")
    r, idx, sizes, means = _grouped("grpo", rewards, group_ids)
    centred = r - means[idx]
    if scale == "none":
        return centred
    sq = torch.zeros_like(sizes).index_add_(0, idx, centred * centred)
    # Bessel's correction; a size-1 group has centred == 0, so any finite divisor gives 0.
    std = (sq / (sizes - 1).clamp(min=1)).sqrt()
    return centred / (std[idx] + eps)


@register_advantage("rloo")
def rloo_advantage(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics"; Kool et al. 2019).

    ``A_i = r_i - (sum_g - r_i) / (n_g - 1)``: the baseline is the mean of the *other* members,
    which keeps the estimator unbiased. Equals ``n_g / (n_g - 1) * (r_i - mean_g)``. A group of
    one sample has no other member and gets 0.
    """
    r, idx, sizes, means = _grouped("rloo", rewards, group_ids)
    n = sizes[idx]
    loo_mean = (means[idx] * n - r) / (n - 1).clamp(min=1)
    return torch.where(n > 1, r - loo_mean, torch.zeros_like(r))


@register_advantage("reinforce_pp_baseline")
def reinforce_pp_baseline_advantage(rewards: Tensor, group_ids: Tensor, *, eps: float = 1e-4) -> Tensor:
    """REINFORCE++-baseline (Hu 2025, "REINFORCE++", arXiv 2501.03262).

    ``A_i = (r_i - mean_g) / (std_batch(r - mean_g) + eps)``: the group mean is the baseline, and
    the scale is the unbiased std over the *whole batch* of centred rewards, which is more stable
    than a per-group std on small groups. The batch mean of centred rewards is 0 by construction,
    so the batch whitening needs no second centring. A batch of one sample uses std 0.
    """
    r, idx, _, means = _grouped("reinforce_pp_baseline", rewards, group_ids)
    centred = r - means[idx]
    std = centred.std() if centred.numel() > 1 else centred.new_zeros(())
    return centred / (std + eps)


# ----------------------------------------------------------------------------------------------
# KL estimators (Schulman 2020, "Approximating KL Divergence"), per token, samples from the policy
# ----------------------------------------------------------------------------------------------
@register_kl("k1")
def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = ``logp - ref_logp``: unbiased for KL(pi || ref) but high variance, can be negative."""
    _check_same_shape("kl k1", logp=logp, ref_logp=ref_logp)
    return logp - ref_logp


@register_kl("k2")
def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 = ``0.5 * (logp - ref_logp)**2``: biased, low variance, >= 0; its gradient is that of KL."""
    _check_same_shape("kl k2", logp=logp, ref_logp=ref_logp)
    return 0.5 * (logp - ref_logp) ** 2


@register_kl("k3")
def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = ``exp(ref - logp) - (ref - logp) - 1``: unbiased for KL(pi || ref), low variance, >= 0.

    The estimator of GRPO (DeepSeekMath) and of Visual-RFT / Reason-RFT. The log-ratio
    ``ref - logp`` is clamped to ``[-20, 20]`` (``LOG_RATIO_CLAMP``) so ``exp`` can never overflow
    to inf (a token the reference finds impossible, or a pad token's garbage logprob); beyond the
    clamp the value is still huge but finite, and its gradient is 0.
    """
    _check_same_shape("kl k3", logp=logp, ref_logp=ref_logp)
    log_ratio = (ref_logp - logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.exp(log_ratio) - log_ratio - 1.0


# ----------------------------------------------------------------------------------------------
# DAPO pieces (Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale")
# ----------------------------------------------------------------------------------------------
def dynamic_sampling_mask(rewards: Tensor, group_ids: Tensor, *, tol: float = 1e-6) -> Tensor:
    """DAPO dynamic sampling: True = keep. Drops exactly the groups whose rewards are all equal
    (``max_g - min_g <= tol``): their group-relative advantages are 0, so they only dilute the batch
    and the per-token average. A group of one sample is such a group."""
    r, idx, sizes, _ = _grouped("dynamic_sampling_mask", rewards, group_ids)
    hi = torch.zeros_like(sizes).scatter_reduce(0, idx, r, reduce="amax", include_self=False)
    lo = torch.zeros_like(sizes).scatter_reduce(0, idx, r, reduce="amin", include_self=False)
    return (hi - lo > tol)[idx]


def overlong_penalty(lengths: Tensor, max_len: int, buffer_len: int, penalty: float = 1.0) -> Tensor:
    """DAPO soft overlong punishment, a reward term added to the task reward.

    ``0`` if ``len <= max_len - buffer_len``; ``-penalty * (len - (max_len - buffer_len)) / buffer_len``
    inside the buffer (linear, ``-penalty`` at ``len == max_len``); ``-penalty`` beyond. DAPO uses
    max_len 20480 with a 4096 buffer. ``buffer_len == 0`` gives a hard step after ``max_len``.
    """
    if lengths.dim() != 1:
        raise ValueError(f"overlong_penalty: lengths must be 1-D, got shape {tuple(lengths.shape)}")
    if not 0 <= buffer_len <= max_len:
        raise ValueError(f"overlong_penalty: need 0 <= buffer_len <= max_len, got {buffer_len}, {max_len}")
    over = (lengths.to(torch.float32) - (max_len - buffer_len)).clamp(min=0.0)
    frac = (over / buffer_len).clamp(max=1.0) if buffer_len > 0 else (over > 0).to(torch.float32)
    return -penalty * frac


def truncation_mask(finish_reasons: Sequence[str], *, device: torch.device | str | None = None) -> Tensor:
    """False for completions cut by the length limit (``finish_reason == "length"``), True otherwise.

    DAPO / TRL ``mask_truncated_completions``: a truncated answer is neither right nor wrong, so
    multiplying it into the loss mask removes it from the gradient instead of punishing it.
    """
    return torch.tensor([fr != "length" for fr in finish_reasons], dtype=torch.bool, device=device)


# ----------------------------------------------------------------------------------------------
# rollout/learner mismatch correction
# ----------------------------------------------------------------------------------------------
def truncated_is_weights(
    learner_logp: Tensor, rollout_logp: Tensor, mask: Tensor, cap: float = 2.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """Truncated importance sampling (TIS; Yao et al. 2025, "Your Efficient RL Framework Secretly
    Brings You Off-Policy RL Training").

    The rollout engine (vLLM kernels, bf16, maybe a stale policy) samples from a slightly
    different distribution than the learner computes. Per token
    ``w = min(exp(learner_logp - rollout_logp), cap)``, detached and 0 where masked; multiply it
    into the per-token policy loss. Metrics: ``is/mismatch_kl`` = masked mean of k3 estimating
    KL(pi_rollout || pi_learner) on the rollout's samples, ``is/clipped_frac`` = fraction of
    unmasked tokens whose ratio exceeded ``cap``, ``is/weight_mean`` = masked mean weight.
    """
    if cap <= 0:
        raise ValueError(f"truncated_is_weights: cap must be > 0, got {cap}")
    _check_same_shape("truncated_is_weights", learner_logp=learner_logp, rollout_logp=rollout_logp, mask=mask)
    m = _bool_mask(mask)
    learner_logp, rollout_logp = learner_logp.detach(), rollout_logp.detach()
    zero = torch.zeros((), dtype=learner_logp.dtype, device=learner_logp.device)
    log_ratio = torch.where(m, learner_logp - rollout_logp, zero).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    weights = torch.where(m, ratio.clamp(max=cap), zero)
    # k3 with logp := rollout, ref := learner, i.e. the samples' own distribution is the rollout's.
    mismatch = kl_k3(torch.where(m, rollout_logp, zero), torch.where(m, learner_logp, zero))
    metrics = {
        "is/mismatch_kl": masked_mean(mismatch, m),
        "is/clipped_frac": masked_mean((ratio > cap).to(ratio.dtype), m),
        "is/weight_mean": masked_mean(weights, m),
    }
    return weights, metrics
