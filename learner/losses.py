"""Policy losses, loss aggregation and per-token logprob/entropy helpers of the GRPO family.

Package-internal half of :mod:`vrft.learner.algorithms`; import everything from there. This module also
holds the name registry and the shape checks that both halves share (it imports nothing of ours,
so ``algorithms`` can import it without a cycle).

Conventions: ``logp``, ``old_logp`` and ``mask`` are ``[B, T]`` (one row per completion, one
column per completion token); ``mask`` is bool or 0/1 float (a fractional value acts as a weight in
the sums *and* in the token counts, i.e. a weighted mean); ``advantages`` is ``[B]`` (one per
completion, broadcast over its tokens) or ``[B, T]``. Policy losses come back already zeroed where
``mask == 0``; :func:`aggregate_loss` applies the mask again, so a per-token KL term can be added
unmasked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

# Bound on every log-ratio that goes through exp(): exp(20) ~ 4.9e8 is far beyond any clip range,
# and it keeps a stray garbage logprob (e.g. -inf on a pad token) from producing inf and then NaN.
LOG_RATIO_CLAMP = 20.0


class _Registry:
    """A name -> function table with a one-line error listing the valid names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._fns: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            old = self._fns.get(name)
            # Re-registering the same function (e.g. a module imported twice) is harmless;
            # silently replacing a different one would change a run's algorithm behind its back.
            if old is not None and _fn_id(old) != _fn_id(fn):
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._fns[name] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._fns:
            raise ValueError(f"unknown {self.kind} '{name}'; choose from: {', '.join(self.names())}")
        return self._fns[name]

    def names(self) -> list[str]:
        return sorted(self._fns)


def _fn_id(fn: Callable[..., Any]) -> tuple[str, str]:
    return getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn))


def _check_same_shape(where: str, **tensors: Tensor) -> None:
    items = list(tensors.items())
    name0, t0 = items[0]
    for name, t in items[1:]:
        if t.shape != t0.shape:
            raise ValueError(f"{where}: {name} shape {tuple(t.shape)} != {name0} shape {tuple(t0.shape)}")


def _bool_mask(mask: Tensor) -> Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x * mask``; positions where ``mask == 0`` contribute exactly 0 even if ``x`` is inf/NaN."""
    _check_same_shape("masked_sum", x=x, mask=mask)
    weighted = x * mask if mask.is_floating_point() else x
    vals = torch.where(_bool_mask(mask), weighted, torch.zeros((), dtype=x.dtype, device=x.device))
    return vals.sum() if dim is None else vals.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """``sum(x * mask) / sum(mask)`` over ``dim`` (all elements if None); 0 where the mask is empty, never NaN."""
    num = masked_sum(x, mask, dim)
    den = mask.to(num.dtype)
    den = den.sum() if dim is None else den.sum(dim)
    return num / den.clamp(min=torch.finfo(num.dtype).tiny)


# ----------------------------------------------------------------------------------------------
# policy losses: fn(logp, old_logp, advantages, mask, **opts) -> (per_token_loss [B,T], metrics)
# ----------------------------------------------------------------------------------------------
_POLICY_LOSSES = _Registry("policy loss")
PolicyLossFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]


def register_policy_loss(name: str) -> Callable[[PolicyLossFn], PolicyLossFn]:
    """Decorator: register ``fn(logp, old_logp, advantages, mask, **opts)`` under ``name``."""
    return _POLICY_LOSSES.register(name)


def get_policy_loss(name: str) -> PolicyLossFn:
    """The policy loss registered as ``name``; ValueError listing the valid names otherwise."""
    return _POLICY_LOSSES.get(name)


def list_policy_losses() -> list[str]:
    return _POLICY_LOSSES.names()


def _prep_policy_inputs(
    where: str, logp: Tensor, old_logp: Tensor | None, advantages: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor]:
    """Validate shapes; return (bool mask, advantages broadcastable to [B, T])."""
    if logp.dim() != 2:
        raise ValueError(f"{where}: logp must be [B, T], got shape {tuple(logp.shape)}")
    if old_logp is not None:
        _check_same_shape(where, logp=logp, old_logp=old_logp)
    _check_same_shape(where, logp=logp, mask=mask)
    if advantages.shape == logp.shape[:1]:
        advantages = advantages.unsqueeze(-1)
    elif advantages.shape != logp.shape:
        raise ValueError(
            f"{where}: advantages shape {tuple(advantages.shape)} must be [B]={tuple(logp.shape[:1])} "
            f"or [B, T]={tuple(logp.shape)}"
        )
    return _bool_mask(mask), advantages.detach()


def _zero_masked(x: Tensor, m: Tensor) -> Tensor:
    return torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _masked_ratio(logp: Tensor, old_logp: Tensor, m: Tensor) -> Tensor:
    # Zero the log-ratio on masked tokens *before* exp(): a where() after exp() would still
    # back-propagate 0 * inf = NaN through the masked branch.
    log_ratio = _zero_masked(logp - old_logp.detach(), m).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.exp(log_ratio)


@register_policy_loss("visual_rft")
def visual_rft_loss(
    logp: Tensor, old_logp: Tensor | None, advantages: Tensor, mask: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Visual-RFT / R1-V policy loss (Liu et al. 2025, arXiv 2503.01785; Reason-RFT uses the same).

    ``loss_t = -exp(logp_t - stopgrad(logp_t)) * A``: the value is ``-A`` on every unmasked token,
    the gradient is ``-A * grad(logp_t)`` (plain REINFORCE with a group baseline). There is no ratio
    and no clipping because the papers take exactly one gradient step per rollout batch, so
    ``old_logp`` is ignored (it may be None). Metrics are reported for a uniform log: the
    effective ratio is identically 1 and nothing is clipped.
    """
    m, adv = _prep_policy_inputs("visual_rft", logp, old_logp, advantages, mask)
    # zeroed on masked tokens first, so a -inf logprob on padding (-inf - -inf = NaN) stays out
    ratio = torch.exp(_zero_masked(logp - logp.detach(), m))
    loss = _zero_masked(-ratio * adv, m)
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    return loss, {"clipfrac": zero, "ratio_mean": zero + 1.0}


def _clipped_surrogate(
    where: str,
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float,
    clip_high: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    if not 0.0 <= clip_low < 1.0 or clip_high < 0.0:
        raise ValueError(f"{where}: need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    m, adv = _prep_policy_inputs(where, logp, old_logp, advantages, mask)
    ratio = _masked_ratio(logp, old_logp, m)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    # max of the two negated surrogates == -min(ratio*A, clip(ratio)*A)
    loss = torch.maximum(unclipped, clipped)
    is_clipped = (clipped > unclipped) & m  # the clipped branch won: no gradient from this token
    return loss, ratio, adv, m, is_clipped


@register_policy_loss("ppo_clip")
def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate (Schulman et al. 2017) with DAPO's decoupled "clip-higher" (Yu et al. 2025).

    ``ratio = exp(logp - old_logp)``;
    ``loss_t = -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)``.
    ``clip_high > clip_low`` (DAPO: 0.2 / 0.28) lets low-probability tokens with A > 0 grow further,
    which counters entropy collapse. Metrics: ``clipfrac`` (fraction of unmasked tokens where the
    clipped branch is active, i.e. no gradient) and ``ratio_mean`` (masked mean ratio).
    """
    loss, ratio, _, m, is_clipped = _clipped_surrogate(
        "ppo_clip", logp, old_logp, advantages, mask, clip_low, clip_high
    )
    metrics = {
        "clipfrac": masked_mean(is_clipped.to(ratio.dtype), m).detach(),
        "ratio_mean": masked_mean(ratio, m).detach(),
    }
    return _zero_masked(loss, m), metrics


@register_policy_loss("dual_clip")
def dual_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    clip_c: float = 3.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Dual-clip PPO (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL").

    As ``ppo_clip``; in addition, for ``A < 0`` the loss is capped at ``-clip_c * A``:
    ``loss_t = min(ppo_clip_loss_t, -clip_c * A)`` where ``A < 0``. Without the cap a token whose
    ratio has blown up (e.g. a stale off-policy sample) with a negative advantage contributes an
    unbounded loss and gradient. Metrics as ``ppo_clip`` plus ``clipfrac_dual``, the fraction of
    unmasked tokens capped (disjoint from ``clipfrac``; their sum is the no-gradient fraction).
    """
    if clip_c <= 1.0:
        raise ValueError(f"dual_clip: clip_c must be > 1, got {clip_c}")
    loss, ratio, adv, m, is_clipped = _clipped_surrogate(
        "dual_clip", logp, old_logp, advantages, mask, clip_low, clip_high
    )
    cap = -clip_c * adv
    capped = (adv < 0) & (loss > cap) & m
    loss = torch.where(adv < 0, torch.minimum(loss, cap), loss)
    metrics = {
        "clipfrac": masked_mean(is_clipped.to(ratio.dtype), m).detach(),
        "clipfrac_dual": masked_mean(capped.to(ratio.dtype), m).detach(),
        "ratio_mean": masked_mean(ratio, m).detach(),
    }
    return _zero_masked(loss, m), metrics


# ----------------------------------------------------------------------------------------------
# aggregation
# ----------------------------------------------------------------------------------------------
AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def aggregate_loss(
    per_token: Tensor,
    mask: Tensor,
    mode: str,
    *,
    global_tokens: float | None = None,
    global_seqs: float | None = None,
    max_len: int | None = None,
) -> Tensor:
    """Reduce a ``[B, T]`` per-token loss to the scalar contribution of ONE micro-batch.

    Modes (``n_b`` = unmasked tokens of sequence b, ``S``/``N`` = ``global_seqs``/``global_tokens``
    when given, else this micro-batch's ``B`` / ``mask.sum()``):

    - ``"seq-mean-token-mean"`` (Visual-RFT, Reason-RFT, GRPO paper): ``sum_b (sum_t l_bt / n_b) / S``.
      Every completion weighs the same, so each token of a long completion weighs less.
    - ``"token-mean"`` (DAPO, Yu et al. 2025): ``sum_bt l_bt / N``. Every token weighs the same.
    - ``"seq-mean-token-sum"``: ``sum_b sum_t l_bt / S``.
    - ``"seq-mean-token-sum-norm"`` (Dr.GRPO, Liu et al. 2025): ``sum_b (sum_t l_bt / max_len) / S``;
      ``max_len`` (the generation budget, a constant) is required. Removes the length bias of
      dividing by ``n_b``.

    Passing the global counts of everything whose gradients are *summed* (all micro-batches of a
    step) makes the micro-batch contributions add up to the full-batch loss. Beware of
    frameworks that also average: DeepSpeed's ``engine.backward`` divides by the gradient
    accumulation steps and data-parallel all-reduce averages over ranks, so multiply by those
    factors (or divide the global counts by them) to keep the exact full-batch gradient.
    A fully-masked sequence contributes 0 (it still counts in the default ``B``), never NaN.
    """
    if per_token.dim() != 2:
        raise ValueError(f"aggregate_loss: per_token must be [B, T], got shape {tuple(per_token.shape)}")
    _check_same_shape("aggregate_loss", per_token=per_token, mask=mask)
    for name, val in (("global_tokens", global_tokens), ("global_seqs", global_seqs)):
        if val is not None and val < 0:
            raise ValueError(f"aggregate_loss: {name} must be >= 0, got {val}")
    # A zero global count can only happen when everything is masked, and then every sum is 0:
    # dividing by a tiny number instead of 0 keeps the result 0 (and the graph alive).
    tiny = torch.finfo(per_token.dtype).tiny
    if mode == "token-mean":
        total = masked_sum(per_token, mask)
        if global_tokens is None:
            return total / mask.to(total.dtype).sum().clamp(min=tiny)
        return total / max(float(global_tokens), tiny)
    n_seqs = float(per_token.shape[0] if global_seqs is None else global_seqs)
    seq_sums = masked_sum(per_token, mask, dim=-1)
    if mode == "seq-mean-token-mean":
        seq_vals = seq_sums / mask.to(seq_sums.dtype).sum(-1).clamp(min=1.0)
    elif mode == "seq-mean-token-sum":
        seq_vals = seq_sums
    elif mode == "seq-mean-token-sum-norm":
        if max_len is None or max_len <= 0:
            raise ValueError(
                f"aggregate_loss: mode 'seq-mean-token-sum-norm' needs max_len > 0, got {max_len}"
            )
        seq_vals = seq_sums / float(max_len)
    else:
        raise ValueError(f"unknown loss aggregation mode '{mode}'; choose from: {', '.join(AGG_MODES)}")
    return seq_vals.sum() / max(n_seqs, tiny)


# ----------------------------------------------------------------------------------------------
# logits -> per-token logprobs / entropy
# ----------------------------------------------------------------------------------------------
def _reduced_dtype(logits: Tensor) -> torch.dtype:
    return torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype


def _row_views(logits: Tensor, chunk_rows: int) -> list[Tensor]:
    """``[rows, V]`` views covering ``logits`` in row-major order, never copying the logits.

    ``logits[:, :-1]`` (the usual shift) is not viewable as ``[-1, V]``; a plain reshape would
    then copy the whole ``[B, T, V]`` tensor, so fall back to one leading index at a time.
    """
    if logits.dim() <= 2:
        return list(logits.reshape(-1, logits.shape[-1]).split(chunk_rows))
    try:
        return list(logits.view(-1, logits.shape[-1]).split(chunk_rows))
    except RuntimeError:
        return [v for sub in logits.unbind(0) for v in _row_views(sub, chunk_rows)]


def _row_chunks(logits: Tensor, chunk_rows: int, temperature: float) -> list[Tensor]:
    if chunk_rows <= 0 or temperature <= 0:
        raise ValueError(f"need chunk_rows > 0 and temperature > 0, got {chunk_rows}, {temperature}")
    out = []
    for chunk in _row_views(logits, chunk_rows):
        # float32 for the reductions over the vocabulary: in bf16 a logsumexp of ~20 is only
        # good to ~0.1, far too coarse for PPO ratios. A no-op copy-wise when already float32.
        z = chunk.to(_reduced_dtype(chunk))
        out.append(z / temperature if temperature != 1.0 else z)
    return out


def _ban(z: Tensor, banned: Tensor | Sequence[int] | None) -> Tensor:
    """``z`` with the ``banned`` vocabulary columns at -inf (a copy; ``z`` itself if none)."""
    if banned is None or len(banned) == 0:
        return z
    ids = torch.as_tensor(banned, dtype=torch.long, device=z.device)
    return z.index_fill(-1, ids, float("-inf"))


def token_logprobs_from_logits(
    logits: Tensor, labels: Tensor, *, temperature: float = 1.0, chunk_rows: int = 1024,
    banned: Tensor | Sequence[int] | None = None,
) -> Tensor:
    """``log_softmax(logits / temperature)[..., labels]`` as ``[B, T]``, computed as
    ``logits.gather(labels) - logsumexp(logits)`` over row chunks.

    ``banned``: vocabulary ids the rollout engines never sample (their logits at -inf there): the
    normaliser then runs over the remaining vocabulary only, as the engines' log-probs do. A banned
    label (a prompt or padding position, never a sampled token) gets a finite, meaningless value
    rather than -inf, so masked positions cannot turn a sum into NaN.

    Memory: no log-softmax ``[B, T, V]`` is materialised, and without autograd the temporaries of
    the vocabulary reduction are bounded by one chunk of ``chunk_rows`` rows. Half-precision
    logits are reduced in float32 (under autograd those float32 chunks are kept for backward).
    ``temperature`` must match the sampling temperature for the result to be comparable with the
    rollout engine's (processed) logprobs. Returns float32 for half inputs, else the input dtype.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"token_logprobs_from_logits: logits shape {tuple(logits.shape)} does not match labels "
            f"shape {tuple(labels.shape)} + [V]"
        )
    chunks = _row_chunks(logits, chunk_rows, temperature)
    rows = labels.reshape(-1, 1).split([z.shape[0] for z in chunks])
    parts = [
        z.gather(-1, lab).squeeze(-1) - torch.logsumexp(_ban(z, banned), dim=-1)
        for z, lab in zip(chunks, rows, strict=True)
    ]
    if not parts:  # B * T == 0
        return logits.new_zeros(labels.shape, dtype=_reduced_dtype(logits))
    return torch.cat(parts).reshape(labels.shape)


def entropy_from_logits(logits: Tensor, *, temperature: float = 1.0, chunk_rows: int = 1024,
                        banned: Tensor | Sequence[int] | None = None) -> Tensor:
    """Entropy ``H = -sum_v p_v log p_v`` of ``softmax(logits / temperature)``, ``[B, T, V] -> [B, T]``,
    over the vocabulary without the ``banned`` ids (as :func:`token_logprobs_from_logits`).

    Computed as ``logsumexp(z) - sum_v softmax(z)_v * z_v``, which never takes ``log(0)``: a
    one-hot-like distribution gives 0, not NaN. Row-chunked and float32 as
    :func:`token_logprobs_from_logits`.
    """
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(
            f"entropy_from_logits: logits need a vocabulary dim, got shape {tuple(logits.shape)}"
        )
    parts = []
    for z in _row_chunks(logits, chunk_rows, temperature):
        z = _ban(z, banned)
        lse = torch.logsumexp(z, dim=-1, keepdim=True)
        p = torch.exp(z - lse)
        # A -inf logit (a banned token) has p = 0: count 0 for it instead of 0 * -inf = NaN. The
        # -inf is replaced before the product, so the backward pass meets no 0 * inf either.
        pz = p * torch.where(torch.isneginf(z), torch.zeros((), dtype=z.dtype, device=z.device), z)
        parts.append((lse - pz.sum(-1, keepdim=True)).squeeze(-1))
    if not parts:  # B * T == 0
        return logits.new_zeros(logits.shape[:-1], dtype=_reduced_dtype(logits))
    return torch.cat(parts).reshape(logits.shape[:-1])
