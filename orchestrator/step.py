"""One GRPO step: sample → score (streaming) → group advantages → learn → sync.

Completions go to the verifier pool as each rollout call returns, so scoring overlaps sampling;
only the tail of scoring after the last call is on the critical path (`time/verify`).
In async mode the next step's rollouts are launched before learning: the workers generate while
the learner trains, and receive the new weights once those calls are done (a Ray actor serves its
calls in order), so a batch is at most `run.max_staleness` policy versions old when trained on.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import ray
import torch

from learner import Sample, TrainBatch
from learner.algorithms import dynamic_sampling_mask, get_advantage, overlong_penalty
from orchestrator.config import TrainConfig
from orchestrator.data import PromptItem
from orchestrator.session import Actors, sync_weights
from rollout.engine import Completion, SamplingParams


def sampling_for(cfg: TrainConfig, seed: int) -> SamplingParams:
    rc = cfg.rollout
    return SamplingParams(n=rc.n, temperature=rc.temperature, top_p=rc.top_p, top_k=rc.top_k,
                          max_new_tokens=rc.max_new_tokens, seed=seed)


@dataclass
class PendingRollout:
    """Rollout calls in flight for one step's prompts (sync mode collects at once; async later)."""
    items: list[PromptItem]
    calls: dict  # ObjectRef -> index of the call's first prompt
    started: float
    policy_version: int  # the workers' version when launched (they may update before running it)
    data_state: dict | None = None  # the data position before these prompts were drawn (resume)


def launch_rollout(cfg: TrainConfig, actors: Actors, items: list[PromptItem], step: int,
                   refill_round: int = 0) -> PendingRollout:
    per_call = cfg.rollout.prompts_per_call
    calls = {}
    for c, first in enumerate(range(0, len(items), per_call)):
        worker = actors.workers[c % len(actors.workers)]
        chunk = [it.inputs for it in items[first:first + per_call]]
        seed = (cfg.run.seed * 1_000_003 + step * 10_007 + refill_round * 1_009 + c) % 2**31
        calls[worker.generate.remote(chunk, sampling_for(cfg, seed))] = first
    return PendingRollout(items, calls, time.perf_counter(), actors.version)


def collect_and_score(actors: Actors, pending: PendingRollout,
                      ) -> tuple[list[list[Completion]], dict[str, dict[str, float]], dict[str, float]]:
    """Completions per prompt, their scores by key "i:j", and timings. Each call's completions go
    to the verifier pool as soon as that call returns."""
    items = pending.items
    groups: list[list[Completion]] = [[] for _ in items]
    engine_seconds = 0.0
    waiting = list(pending.calls)
    collect_start = time.perf_counter()
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        chunk_groups, seconds = ray.get(done[0])
        engine_seconds += seconds
        first = pending.calls[done[0]]
        for offset, group in enumerate(chunk_groups):
            i = first + offset
            groups[i] = group
            for comp in group:
                actors.pool.submit(f"{i}:{comp.sample_index}", comp.text, items[i].ground_truth)
    rollout_done = time.perf_counter()
    keys = [f"{i}:{c.sample_index}" for i, g in enumerate(groups) for c in g]
    scores = actors.pool.gather(keys)
    timings = {"time/rollout": rollout_done - collect_start,  # what the loop waited for
               "time/verify": time.perf_counter() - rollout_done,
               "time/engine_busy": engine_seconds}
    return groups, scores, timings


def shaped_rewards(cfg: TrainConfig, groups: list[list[Completion]], scores: dict[str, dict[str, float]],
                   ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Every completion's reward (the verifiers' total plus DAPO's overlong penalty, if on) and its
    group id, flattened in group order."""
    flat = [(i, c) for i, group in enumerate(groups) for c in group]
    rewards = torch.tensor([scores[f"{i}:{c.sample_index}"]["total"] for i, c in flat], dtype=torch.float32)
    group_ids = torch.tensor([i for i, _ in flat], dtype=torch.long)
    lc, metrics = cfg.learner, {}
    if lc.overlong_buffer > 0:
        lengths = torch.tensor([len(c.token_ids) for _, c in flat])
        penalty = overlong_penalty(lengths, cfg.rollout.max_new_tokens, lc.overlong_buffer, lc.overlong_penalty)
        rewards = rewards + penalty
        metrics["reward/overlong_penalty"] = float(penalty.mean())
    return rewards, group_ids, metrics


def kept_groups(cfg: TrainConfig, rewards: torch.Tensor, group_ids: torch.Tensor,
                max_groups: int | None = None) -> torch.Tensor:
    """Which completions train: all, or with dynamic sampling those of the first `max_groups`
    groups whose rewards differ."""
    if not cfg.learner.dynamic_sampling or not len(rewards):
        return torch.ones(len(rewards), dtype=torch.bool)
    keep = dynamic_sampling_mask(rewards, group_ids)
    if max_groups is not None:  # refills may bring more informative groups than the batch needs
        ids = sorted(set(group_ids[keep].tolist()))[:max_groups]
        keep &= torch.isin(group_ids, torch.tensor(ids, dtype=torch.long))
    return keep


def build_batch(cfg: TrainConfig, items: list[PromptItem], groups: list[list[Completion]],
                scores: dict[str, dict[str, float]], max_groups: int | None = None,
                ) -> tuple[TrainBatch, torch.Tensor, dict[str, float]]:
    """The learner's batch: rewards (plus DAPO's overlong penalty), group advantages, and — with
    dynamic sampling — only the groups whose rewards differ, the first `max_groups` of them.
    Returns the batch, every completion's reward (dropped groups included, for logging) and the
    DAPO metrics."""
    lc = cfg.learner
    rewards, group_ids, metrics = shaped_rewards(cfg, groups, scores)
    keep = kept_groups(cfg, rewards, group_ids, max_groups)
    if lc.dynamic_sampling:
        metrics["dapo/groups_kept"] = float(len(set(group_ids[keep].tolist())))
        metrics["dapo/groups_dropped"] = float(len(groups) - metrics["dapo/groups_kept"])
    advantages = torch.zeros_like(rewards)
    if bool(keep.any()):
        advantages[keep] = get_advantage(lc.advantage)(rewards[keep], group_ids[keep], **lc.advantage_options)
    flat = [(i, items[i], comp) for i, group in enumerate(groups) for comp in group]
    samples = [Sample(prompt_ids=item.inputs.input_ids, completion_ids=comp.token_ids,
                      advantage=float(advantages[k]), group_id=gid, rollout_logprobs=comp.logprobs,
                      pixel_values=item.inputs.pixel_values, image_grid_thw=item.inputs.image_grid_thw,
                      prompt_mm_token_type_ids=item.inputs.mm_token_type_ids,
                      finish_reason=comp.finish_reason, reward=float(rewards[k]))
               for k, (gid, item, comp) in enumerate(flat) if keep[k]]
    return TrainBatch(samples, max_completion_len=cfg.rollout.max_new_tokens), rewards, metrics


def reward_metrics(groups, scores, accuracy_name: str | None) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    count = 0
    for i, group in enumerate(groups):
        for comp in group:
            for name, value in scores[f"{i}:{comp.sample_index}"].items():
                sums[name] += value
            count += 1
    out = {f"reward/{name}": value / max(count, 1) for name, value in sums.items()}
    out["reward/mean"] = out.pop("reward/total", 0.0)
    if accuracy_name is not None:
        out["reward/accuracy"] = out.get(f"reward/{accuracy_name}", 0.0)
    return out


def collect_with_refill(cfg: TrainConfig, actors: Actors, pending: PendingRollout, refill=None,
                        ) -> tuple[list[PromptItem], list[list[Completion]], dict, dict[str, float]]:
    """Collect and score `pending`. With DAPO dynamic sampling and `refill(n, round) -> PendingRollout`,
    draw more prompts (up to `learner.dynamic_sampling_max_refills` rounds) until the groups whose
    rewards differ fill the batch."""
    groups, scores, timings = collect_and_score(actors, pending)
    items = list(pending.items)
    rounds = cfg.learner.dynamic_sampling_max_refills if cfg.learner.dynamic_sampling and refill else 0
    for round_ in range(1, rounds + 1):
        rewards, group_ids, _ = shaped_rewards(cfg, groups, scores)
        kept = len(set(group_ids[kept_groups(cfg, rewards, group_ids)].tolist()))
        missing = len(pending.items) - kept
        if missing <= 0:
            break
        more = refill(missing, round_)
        more_groups, more_scores, more_timings = collect_and_score(actors, more)
        offset = len(items)
        for key, value in more_scores.items():
            i, j = key.split(":")
            scores[f"{int(i) + offset}:{j}"] = value
        items += more.items
        groups += more_groups
        for key, seconds in more_timings.items():
            timings[key] += seconds
        timings["dapo/refill_rounds"] = float(round_)
    return items, groups, scores, timings


def grpo_step(cfg: TrainConfig, actors: Actors, pending: PendingRollout, step: int,
              accuracy_name: str | None, launch_next=None, refill=None) -> dict[str, float]:
    """Train on `pending` (launched earlier). `launch_next()`, if given, is called once this step's
    rollouts are collected and before learning, so the next rollouts overlap with it (async).
    `refill`: see `collect_with_refill`. A batch left empty by dynamic sampling trains nothing
    (the policy version stays) and is counted in `dapo/skipped_steps`."""
    start = time.perf_counter()
    items, groups, scores, metrics = collect_with_refill(cfg, actors, pending, refill)
    if launch_next is not None:
        launch_next()
    batch, rewards, dapo = build_batch(cfg, items, groups, scores, max_groups=len(pending.items))
    metrics.update(dapo)
    metrics.update(reward_metrics(groups, scores, accuracy_name))
    completions = [c for g in groups for c in g]
    lengths = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.float32)
    group_std = torch.stack([rewards[i * cfg.rollout.n:(i + 1) * cfg.rollout.n].std()
                             for i in range(len(groups))]) if cfg.rollout.n > 1 else torch.zeros(1)
    oldest = min(c.policy_version for c in completions)
    staleness = actors.version - oldest
    if staleness > cfg.run.max_staleness:
        raise RuntimeError(f"async: completions from policy version {oldest} reached the learner at "
                           f"version {actors.version}, beyond run.max_staleness={cfg.run.max_staleness}")
    metrics.update({
        "reward/std": float(rewards.std()) if len(rewards) > 1 else 0.0,
        "groups/zero_std_frac": float((group_std < 1e-6).float().mean()),
        "response/length_mean": float(lengths.mean()),
        "response/truncated_frac": sum(c.finish_reason == "length" for c in completions) / len(completions),
        "rollout/tokens": float(lengths.sum()),
        "rollout/policy_version_min": float(oldest),
        "async/staleness": float(staleness),
    })
    colocated = cfg.rollout.placement == "colocated"
    if colocated:  # engines give their GPU memory to the learner, and take it back for the sync
        ray.get([w.sleep.remote() for w in actors.workers])
    learn_start = time.perf_counter()
    learner_metrics = actors.learner.train_step(batch) if batch.samples else {}
    metrics["time/learn"] = time.perf_counter() - learn_start
    if colocated:
        ray.get([w.wake_up.remote() for w in actors.workers])
    metrics.update({f"learner/{k}": v for k, v in learner_metrics.items()})
    if batch.samples:
        metrics.update(sync_weights(actors, actors.version + 1, cfg.sync.bucket_mb))
    else:
        metrics["dapo/skipped_steps"] = 1.0
    metrics["time/step"] = time.perf_counter() - start
    metrics["throughput/tokens_per_s"] = metrics["rollout/tokens"] / metrics["time/step"]
    metrics["policy_version"] = float(actors.version)
    metrics.update(actors.pool.stats())
    return metrics
