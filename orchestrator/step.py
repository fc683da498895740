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
from learner.algorithms import get_advantage
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


def launch_rollout(cfg: TrainConfig, actors: Actors, items: list[PromptItem], step: int) -> PendingRollout:
    per_call = cfg.rollout.prompts_per_call
    calls = {}
    for c, first in enumerate(range(0, len(items), per_call)):
        worker = actors.workers[c % len(actors.workers)]
        chunk = [it.inputs for it in items[first:first + per_call]]
        seed = (cfg.run.seed * 1_000_003 + step * 10_007 + c) % 2**31
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


def build_batch(cfg: TrainConfig, items: list[PromptItem], groups: list[list[Completion]],
                scores: dict[str, dict[str, float]]) -> tuple[TrainBatch, torch.Tensor]:
    rewards, group_ids, flat = [], [], []
    for i, group in enumerate(groups):
        for comp in group:
            rewards.append(scores[f"{i}:{comp.sample_index}"]["total"])
            group_ids.append(i)
            flat.append((items[i], comp))
    rewards_t = torch.tensor(rewards, dtype=torch.float32)
    advantages = get_advantage(cfg.learner.advantage)(
        rewards_t, torch.tensor(group_ids, dtype=torch.long), **cfg.learner.advantage_options)
    samples = [Sample(prompt_ids=item.inputs.input_ids, completion_ids=comp.token_ids,
                      advantage=float(adv), group_id=gid, rollout_logprobs=comp.logprobs,
                      pixel_values=item.inputs.pixel_values, image_grid_thw=item.inputs.image_grid_thw,
                      prompt_mm_token_type_ids=item.inputs.mm_token_type_ids)
               for (item, comp), adv, gid in zip(flat, advantages.tolist(), group_ids, strict=True)]
    return TrainBatch(samples, max_completion_len=cfg.rollout.max_new_tokens), rewards_t


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


def grpo_step(cfg: TrainConfig, actors: Actors, pending: PendingRollout, step: int,
              accuracy_name: str | None, launch_next=None) -> dict[str, float]:
    """Train on `pending` (launched earlier). `launch_next()`, if given, is called once this step's
    rollouts are collected and before learning, so the next rollouts overlap with it (async)."""
    start = time.perf_counter()
    groups, scores, metrics = collect_and_score(actors, pending)
    if launch_next is not None:
        launch_next()
    items = pending.items
    batch, rewards = build_batch(cfg, items, groups, scores)
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
    learner_metrics = actors.learner.train_step(batch)
    metrics["time/learn"] = time.perf_counter() - learn_start
    if colocated:
        ray.get([w.wake_up.remote() for w in actors.workers])
    metrics.update({f"learner/{k}": v for k, v in learner_metrics.items()})
    metrics.update(sync_weights(actors, actors.version + 1, cfg.sync.bucket_mb))
    metrics["time/step"] = time.perf_counter() - start
    metrics["throughput/tokens_per_s"] = metrics["rollout/tokens"] / metrics["time/step"]
    metrics["policy_version"] = float(actors.version)
    metrics.update(actors.pool.stats())
    return metrics
