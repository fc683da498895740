"""Unit tests of vrft.learner.algorithms against values computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

import vrft.learner.algorithms as alg
from vrft.learner.algorithms import (
    aggregate_loss,
    dynamic_sampling_mask,
    entropy_from_logits,
    get_advantage,
    get_kl,
    get_policy_loss,
    list_advantages,
    list_kls,
    list_policy_losses,
    masked_mean,
    overlong_penalty,
    register_advantage,
    token_logprobs_from_logits,
    truncated_is_weights,
    truncation_mask,
)
from vrft.learner.losses import _row_views  # internal: checked for not copying the logits


def t(*xs, dtype=torch.float32):
    return torch.tensor(xs, dtype=dtype)


def ids(*xs):
    return torch.tensor(xs, dtype=torch.long)


def close(actual, expected, tol=1e-6):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=tol, rtol=tol)


# ------------------------------------------------------------------------------------ registries
def test_registries_list_the_builtins():
    assert list_advantages() == ["grpo", "reinforce_pp_baseline", "rloo"]
    assert list_kls() == ["k1", "k2", "k3"]
    assert list_policy_losses() == ["dual_clip", "ppo_clip", "visual_rft"]


@pytest.mark.parametrize(
    "getter, kind, listed",
    [
        (get_advantage, "advantage estimator", "grpo, reinforce_pp_baseline, rloo"),
        (get_policy_loss, "policy loss", "dual_clip, ppo_clip, visual_rft"),
        (get_kl, "KL estimator", "k1, k2, k3"),
    ],
)
def test_unknown_names_raise_one_line_value_error(getter, kind, listed):
    with pytest.raises(ValueError) as err:
        getter("x")
    assert str(err.value) == f"unknown {kind} 'x'; choose from: {listed}"
    assert "\n" not in str(err.value)


def test_unknown_aggregation_mode_raises():
    with pytest.raises(ValueError, match="unknown loss aggregation mode 'nope'; choose from: token-mean"):
        aggregate_loss(torch.ones(1, 2), torch.ones(1, 2), "nope")


def test_register_refuses_to_silently_replace_a_builtin():
    with pytest.raises(ValueError, match="already registered"):

        @register_advantage("grpo")
        def other(rewards, group_ids):  # pragma: no cover - never called
            return rewards


def test_everything_is_importable_from_algorithms():
    for name in alg.__all__:
        assert hasattr(alg, name), name


# ------------------------------------------------------------------------------------ advantages
def test_grpo_exact_values_unbiased_std_and_eps():
    # mean 0.5; unbiased var = 4 * 0.25 / 3 = 1/3; A = +-0.5 / (sqrt(1/3) + 1e-4) = +-0.86587543
    adv = get_advantage("grpo")(t(1, 0, 0, 1), ids(7, 7, 7, 7))
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    assert a == pytest.approx(0.8658754297607016)
    close(adv, [a, -a, -a, a])
    close(adv.sum(), 0.0)


def test_grpo_equal_rewards_give_zero_and_groups_sum_to_zero():
    adv = get_advantage("grpo")(t(0.3, 0.3, 0.3, 1.0, 0.2, 0.5, 0.0), ids(0, 0, 0, 1, 1, 1, 1))
    close(adv[:3], [0.0, 0.0, 0.0])
    close(adv[3:].sum(), 0.0, tol=1e-5)
    assert torch.isfinite(adv).all()


def test_grpo_groups_by_id_not_by_position():
    # Two prompts P0 (rewards 1, 0) and P1 (rewards 3, 1), G = 2, in tiled vs interleaved order.
    grpo = get_advantage("grpo")
    tiled = grpo(t(1, 3, 0, 1), ids(0, 1, 0, 1))
    inter = grpo(t(1, 0, 3, 1), ids(0, 0, 1, 1))
    # Each group: mean +-0.5 resp. +-1, unbiased std sqrt(0.5) resp. sqrt(2).
    a0, a1 = 0.5 / (math.sqrt(0.5) + 1e-4), 1.0 / (math.sqrt(2) + 1e-4)
    close(inter, [a0, -a0, a1, -a1])
    close(tiled, inter[[0, 2, 1, 3]])
    # Non-contiguous, unsorted, negative ids are fine too.
    close(grpo(t(1, 3, 0, 1), ids(-5, 42, -5, 42)), tiled)


def test_grpo_scale_none_is_dr_grpo():
    adv = get_advantage("grpo")(t(1, 0, 0, 1, 4, 2), ids(0, 0, 0, 0, 1, 1), scale="none")
    close(adv, [0.5, -0.5, -0.5, 0.5, 1.0, -1.0])


def test_grpo_size_one_group_gives_zero_not_nan():
    adv = get_advantage("grpo")(t(5.0, 1, 0), ids(3, 1, 1))
    assert torch.isfinite(adv).all()
    assert adv[0].item() == 0.0
    assert get_advantage("grpo")(t(2.0), ids(0)).tolist() == [0.0]


def test_grpo_options_and_input_validation():
    grpo = get_advantage("grpo")
    close(grpo(t(1, 0), ids(0, 0), eps=0.0), [1 / math.sqrt(2), -1 / math.sqrt(2)])
    with pytest.raises(ValueError, match="scale"):
        grpo(t(1, 0), ids(0, 0), scale="batch")
    with pytest.raises(ValueError, match="shape"):
        grpo(t(1, 0, 1), ids(0, 0))
    with pytest.raises(ValueError, match="integer"):
        grpo(t(1, 0), t(0, 0))
    with pytest.raises(ValueError, match="NaN"):
        grpo(t(1, float("nan")), ids(0, 0))
    assert grpo(t(), ids()).shape == (0,)


def test_rloo_exact_values():
    adv = get_advantage("rloo")(t(1, 0, 0, 1, 3, 1, 9), ids(0, 0, 0, 0, 1, 1, 2))
    # group 0: 1 - (0+0+1)/3 = 2/3, 0 - (1+0+1)/3 = -2/3; group 1: 3 - 1, 1 - 3; singleton -> 0
    close(adv, [2 / 3, -2 / 3, -2 / 3, 2 / 3, 2.0, -2.0, 0.0])


def test_reinforce_pp_baseline_exact_values():
    adv = get_advantage("reinforce_pp_baseline")(t(1, 0, 0, 1, 2, 0), ids(0, 0, 0, 0, 1, 1))
    # centred: [.5, -.5, -.5, .5, 1, -1]; sum of squares 3, unbiased var 3/5 over the batch
    s = math.sqrt(0.6) + 1e-4
    close(adv, [0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 1 / s, -1 / s])
    assert 0.5 / s == pytest.approx(0.6454139017914678)
    assert get_advantage("reinforce_pp_baseline")(t(3.0), ids(0)).tolist() == [0.0]


# ------------------------------------------------------------------------------------ KL
def test_kl_values_by_hand():
    logp, ref = t(-1.0, -2.0, -0.5), t(-1.5, -1.0, -0.5)
    close(get_kl("k1")(logp, ref), [0.5, -1.0, 0.0])
    close(get_kl("k2")(logp, ref), [0.125, 0.5, 0.0])
    # k3 = exp(d) - d - 1 with d = ref - logp = [-0.5, 1, 0]
    close(get_kl("k3")(logp, ref), [math.exp(-0.5) - 0.5, math.e - 2, 0.0])


def test_k3_zero_at_reference_nonnegative_and_finite():
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(64, 32, generator=g) * 3
    assert torch.equal(get_kl("k3")(logp, logp), torch.zeros_like(logp))
    ref = torch.randn(64, 32, generator=g) * 3
    k3 = get_kl("k3")(logp, ref)
    assert (k3 >= 0).all()
    d = ref - logp
    close(k3, torch.exp(d) - d - 1, tol=1e-5)
    extreme = get_kl("k3")(t(-1000.0, 0.0, -1e9), t(0.0, -1000.0, 0.0))
    assert torch.isfinite(extreme).all()
    close(extreme[1], math.exp(-20) + 20 - 1)  # clamped at -20


def test_kl_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        get_kl("k3")(torch.zeros(2, 3), torch.zeros(2, 4))


# ------------------------------------------------------------------------------------ policy losses
def test_visual_rft_value_is_minus_a_and_gradient_is_minus_a():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.1, -9.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    adv = t(2.0, -0.5)
    loss, metrics = get_policy_loss("visual_rft")(logp, None, adv, mask)
    close(loss.detach(), [[-2.0, -2.0, 0.0], [0.5, 0.5, 0.5]])
    loss.sum().backward()
    close(logp.grad, [[-2.0, -2.0, 0.0], [0.5, 0.5, 0.5]])
    assert metrics["clipfrac"].item() == 0.0 and metrics["ratio_mean"].item() == 1.0
    # through the Visual-RFT aggregation the gradient is -A / (n_b * B): n = (2, 3), B = 2
    logp.grad = None
    loss, _ = get_policy_loss("visual_rft")(logp, None, adv, mask)
    aggregate_loss(loss, mask, "seq-mean-token-mean").backward()
    close(logp.grad, [[-2.0 / 4, -2.0 / 4, 0.0], [0.5 / 6, 0.5 / 6, 0.5 / 6]])


def _ratios(*rs):
    logp = torch.tensor([[math.log(r) for r in rs]], requires_grad=True)
    return logp, torch.zeros_like(logp.detach())


def test_ppo_clip_is_asymmetric_and_zero_gradient_where_clipped():
    logp, old = _ratios(1.25, 1.3, 0.75, 0.85, 0.75, 1.3)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0, -1.0]])
    loss, metrics = get_policy_loss("ppo_clip")(logp, old, adv, torch.ones(1, 6))
    # 1.25 < 1.28 not clipped; 1.3 -> 1.28; A<0: 0.75 -> 0.8, 0.85 inside;
    # the pessimistic min never clips 0.75 with A>0 nor 1.3 with A<0.
    close(loss.detach(), [[-1.25, -1.28, 0.8, 0.85, -0.75, 1.3]], tol=1e-5)
    loss.sum().backward()
    # d/dlogp of -A * ratio is -A * ratio where unclipped, 0 where clipped
    close(logp.grad, [[-1.25, 0.0, 0.0, 0.85, -0.75, 1.3]], tol=1e-5)
    close(metrics["clipfrac"], 2 / 6)
    close(metrics["ratio_mean"], sum([1.25, 1.3, 0.75, 0.85, 0.75, 1.3]) / 6, tol=1e-5)


def test_ppo_clip_symmetric_option_and_masking():
    logp, old = _ratios(1.25, 50.0)
    mask = torch.tensor([[True, False]])
    loss, metrics = get_policy_loss("ppo_clip")(logp, old, t(1.0), mask, clip_low=0.2, clip_high=0.2)
    close(loss.detach(), [[-1.2, 0.0]], tol=1e-6)
    assert metrics["clipfrac"].item() == 1.0  # only the unmasked token counts
    close(metrics["ratio_mean"], 1.25, tol=1e-5)


@pytest.mark.parametrize("name", ["visual_rft", "ppo_clip", "dual_clip"])
def test_policy_loss_survives_garbage_logprobs_on_masked_tokens(name):
    logp = torch.tensor([[-0.1, float("-inf"), float("nan")]], requires_grad=True)
    old = torch.tensor([[-0.1, 0.0, 0.0]])
    ref = torch.tensor([[-0.2, 0.0, 0.0]])
    mask = torch.tensor([[1, 0, 0]])
    loss, metrics = get_policy_loss(name)(logp, old, t(1.0), mask)
    per_token = loss + 0.04 * get_kl("k3")(logp, ref)  # unmasked KL: aggregate_loss masks it
    aggregate_loss(per_token, mask, "seq-mean-token-mean").backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logp.grad).all()
    assert logp.grad[0, 1:].tolist() == [0.0, 0.0]
    assert all(torch.isfinite(v) for v in metrics.values())


def test_dual_clip_caps_negative_advantage_losses():
    logp, old = _ratios(5.0, 2.0, 5.0, 0.5)
    adv = torch.tensor([[-1.0, -1.0, 1.0, -2.0]])
    loss, metrics = get_policy_loss("dual_clip")(logp, old, adv, torch.ones(1, 4))
    # A=-1, ratio 5: ppo loss 5 capped at 3 * 1; ratio 2: 2 < 3 kept; A>0: as ppo_clip (1.28);
    # A=-2, ratio 0.5: ppo clip to 0.8 -> 1.6 < cap 6.
    close(loss.detach(), [[3.0, 2.0, -1.28, 1.6]], tol=1e-5)
    loss.sum().backward()
    close(logp.grad, [[0.0, 2.0, 0.0, 0.0]], tol=1e-5)
    close(metrics["clipfrac_dual"], 0.25)
    close(metrics["clipfrac"], 0.5)
    ppo, _ = get_policy_loss("ppo_clip")(logp, old, adv, torch.ones(1, 4))
    assert ppo[0, 0].item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="clip_c"):
        get_policy_loss("dual_clip")(logp, old, adv, torch.ones(1, 4), clip_c=1.0)


def test_policy_loss_accepts_token_level_advantages_and_validates_shapes():
    logp, old = _ratios(1.0, 1.0)
    loss, _ = get_policy_loss("ppo_clip")(logp, old, torch.tensor([[1.0, -3.0]]), torch.ones(1, 2))
    close(loss.detach(), [[-1.0, 3.0]])
    with pytest.raises(ValueError, match="advantages shape"):
        get_policy_loss("ppo_clip")(logp, old, t(1.0, 2.0), torch.ones(1, 2))
    with pytest.raises(ValueError, match="mask shape"):
        get_policy_loss("visual_rft")(logp, None, t(1.0), torch.ones(1, 3))
    with pytest.raises(ValueError, match="old_logp shape"):
        get_policy_loss("ppo_clip")(logp, torch.zeros(2, 2), t(1.0), torch.ones(1, 2))


# ------------------------------------------------------------------------------------ aggregation
# seq 0: 1 token, loss 0; seq 1: 3 tokens, loss 1 each (T = 4, last column padding)
PER_TOKEN = torch.tensor([[0.0, 7.0, 7.0, 7.0], [1.0, 1.0, 1.0, 7.0]])
MASK = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)


def test_token_mean_weighs_long_responses_more_than_seq_mean():
    token = aggregate_loss(PER_TOKEN, MASK, "token-mean")
    seq = aggregate_loss(PER_TOKEN, MASK, "seq-mean-token-mean")
    assert token.item() == pytest.approx(3 / 4)  # (0 + 1 + 1 + 1) / 4 tokens
    assert seq.item() == pytest.approx(1 / 2)  # (0/1 + 3/3) / 2 sequences
    assert token.item() > seq.item()


def test_seq_mean_token_sum_norm_divides_by_max_len():
    assert aggregate_loss(PER_TOKEN, MASK, "seq-mean-token-sum-norm", max_len=10).item() == pytest.approx(
        (0 / 10 + 3 / 10) / 2
    )
    assert aggregate_loss(PER_TOKEN, MASK, "seq-mean-token-sum").item() == pytest.approx(3 / 2)
    with pytest.raises(ValueError, match="max_len"):
        aggregate_loss(PER_TOKEN, MASK, "seq-mean-token-sum-norm")


@pytest.mark.parametrize(
    "mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
)
def test_micro_batches_sum_to_the_full_batch(mode):
    g = torch.Generator().manual_seed(1)
    per_token = torch.randn(6, 5, generator=g)
    mask = torch.rand(6, 5, generator=g) > 0.4
    mask[2] = False  # a fully masked sequence
    kw = {"max_len": 5}
    full = aggregate_loss(per_token, mask, mode, **kw)
    glob = {"global_tokens": float(mask.sum()), "global_seqs": 6.0}
    parts = [
        aggregate_loss(per_token[s], mask[s], mode, **glob, **kw)
        for s in (slice(0, 2), slice(2, 3), slice(3, 6))
    ]
    close(sum(parts), full.item(), tol=1e-5)
    assert torch.isfinite(full)


def test_fully_masked_contributes_zero_not_nan_and_keeps_the_graph():
    x = torch.ones(2, 3, requires_grad=True)
    empty = torch.zeros(2, 3, dtype=torch.bool)
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        out = aggregate_loss(x * float("inf"), empty, mode, max_len=3)
        assert out.item() == 0.0
        assert aggregate_loss(x, empty, mode, max_len=3, global_tokens=0.0, global_seqs=0.0).item() == 0.0
    aggregate_loss(x, empty, "token-mean").backward()
    assert torch.equal(x.grad, torch.zeros(2, 3))


def test_aggregate_validates_shapes():
    with pytest.raises(ValueError, match="shape"):
        aggregate_loss(torch.ones(2, 3), torch.ones(2, 4), "token-mean")
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        aggregate_loss(torch.ones(3), torch.ones(3), "token-mean")


def test_masked_mean():
    x = torch.tensor([[1.0, 2.0, float("nan")], [4.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    close(masked_mean(x, m), 7 / 3)
    close(masked_mean(x, m, dim=-1), [1.5, 4.0])
    close(masked_mean(x, torch.zeros(2, 3)), 0.0)


# ------------------------------------------------------------------------------------ DAPO pieces
def test_dynamic_sampling_drops_exactly_the_zero_variance_groups():
    rewards = t(1, 1, 1, 0, 1, 0.5, 0.5 + 1e-7, 0, 0, 2)
    group = ids(0, 0, 0, 1, 1, 2, 2, 3, 3, 4)
    keep = dynamic_sampling_mask(rewards, group)
    # dropped: group 0 (all 1), 2 (equal within 1e-6), 3 (all 0), 4 (a singleton); kept: group 1
    assert keep.tolist() == [False, False, False, True, True, False, False, False, False, False]
    assert keep.dtype == torch.bool
    # order-independent
    perm = torch.tensor([9, 3, 0, 5, 1, 7, 4, 2, 8, 6])
    assert torch.equal(dynamic_sampling_mask(rewards[perm], group[perm]), keep[perm])


def test_overlong_penalty_boundaries():
    lengths = torch.tensor([0, 60, 80, 90, 100, 120])
    pen = overlong_penalty(lengths, max_len=100, buffer_len=20, penalty=1.0)
    close(pen, [0.0, 0.0, 0.0, -0.5, -1.0, -1.0])
    close(overlong_penalty(torch.tensor([85]), 100, 20, penalty=2.0), [-0.5])
    close(overlong_penalty(torch.tensor([100, 101]), 100, 0), [0.0, -1.0])
    with pytest.raises(ValueError):
        overlong_penalty(lengths, max_len=10, buffer_len=20)


def test_truncation_mask():
    m = truncation_mask(["stop", "length", "eos", "length"])
    assert m.dtype == torch.bool and m.tolist() == [True, False, True, False]
    assert truncation_mask([]).shape == (0,)


def test_truncated_is_weights_cap_and_metrics():
    learner = torch.tensor(
        [[math.log(0.5), math.log(3.0), 0.0], [math.log(1.5), 5.0, 0.0]], requires_grad=True
    )
    rollout = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    w, metrics = truncated_is_weights(learner, rollout, mask, cap=2.0)
    assert not w.requires_grad
    close(w, [[0.5, 2.0, 1.0], [1.5, 2.0, 0.0]], tol=1e-6)
    assert (w <= 2.0).all()
    close(metrics["is/clipped_frac"], 2 / 5)
    close(metrics["is/weight_mean"], (0.5 + 2 + 1 + 1.5 + 2) / 5, tol=1e-6)
    # k3 with d = learner - rollout: exp(d) - d - 1 = ratio - log(ratio) - 1
    k3 = [0.5 - math.log(0.5) - 1, 3 - math.log(3) - 1, 0.0, 1.5 - math.log(1.5) - 1, math.exp(5) - 5 - 1]
    close(metrics["is/mismatch_kl"], sum(k3) / 5, tol=1e-5)
    w, metrics = truncated_is_weights(rollout, rollout, mask)
    close(metrics["is/mismatch_kl"], 0.0)
    assert metrics["is/clipped_frac"].item() == 0.0


# ------------------------------------------------------------------------------------ logits
def test_entropy_by_hand():
    # p = [1/4, 1/2, 1/4] -> H = 2 * (1/4) ln 4 + (1/2) ln 2 = 1.5 ln 2; uniform over 4 -> ln 4
    logits = torch.tensor([[[0.0, math.log(2), 0.0, float("-inf")], [3.0, 3.0, 3.0, 3.0]]])
    close(entropy_from_logits(logits), [[1.5 * math.log(2), math.log(4)]], tol=1e-6)
    close(entropy_from_logits(torch.tensor([[[1000.0, 0.0]]])), [[0.0]])
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, 11, generator=g)
    p = torch.softmax(x, -1)
    ref = -(p * torch.log(p)).sum(-1)
    close(entropy_from_logits(x), ref, tol=1e-5)
    close(entropy_from_logits(x, chunk_rows=2), ref, tol=1e-5)
    close(entropy_from_logits(x, temperature=0.5), entropy_from_logits(x * 2), tol=1e-5)


def test_token_logprobs_equal_log_softmax_gather():
    close(
        token_logprobs_from_logits(torch.tensor([[[0.0, math.log(2), 0.0]]]), ids(1).view(1, 1)),
        [[math.log(0.5)]],
    )
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 7, 13, generator=g, requires_grad=True)
    labels = torch.randint(0, 13, (2, 7), generator=g)
    ref = torch.log_softmax(x, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    out = token_logprobs_from_logits(x, labels, chunk_rows=3)
    close(out.detach(), ref.detach(), tol=1e-5)
    (grad_out,) = torch.autograd.grad(out.sum(), x)
    (grad_ref,) = torch.autograd.grad(ref.sum(), x)
    close(grad_out, grad_ref, tol=1e-5)
    # half precision in, float32 reductions out
    bf = token_logprobs_from_logits(x.detach().bfloat16(), labels)
    assert bf.dtype == torch.float32
    ref_bf = torch.log_softmax(x.detach().bfloat16().float(), -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    close(bf, ref_bf, tol=1e-5)
    close(
        token_logprobs_from_logits(x.detach(), labels, temperature=2.0),
        torch.log_softmax(x.detach() / 2, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1),
        tol=1e-5,
    )
    with pytest.raises(ValueError, match="labels"):
        token_logprobs_from_logits(x, labels[:, :3])


def test_token_logprobs_on_shifted_logits_read_views_not_copies():
    # the learner passes logits[:, :-1], which is not viewable as [-1, V]
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 6, 9, generator=g)
    labels = torch.randint(0, 9, (3, 5), generator=g)
    shifted = logits[:, :-1]
    ref = torch.log_softmax(shifted, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    close(token_logprobs_from_logits(shifted, labels, chunk_rows=2), ref, tol=1e-5)
    close(entropy_from_logits(shifted, chunk_rows=2), entropy_from_logits(shifted.contiguous()), tol=1e-6)
    views = _row_views(shifted, 2)
    assert [v.shape[0] for v in views] == [2, 2, 1] * 3
    assert all(v.untyped_storage().data_ptr() == logits.untyped_storage().data_ptr() for v in views)
