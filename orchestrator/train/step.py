"""One GRPO step: sample → score (streaming) → shape and select groups → learn → sync.

Every prompt travels as one `PromptGroup` record (records.py) from collection to metrics.
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

from vrft.learner import TrainBatch
from vrft.learner.algorithms import dynamic_sampling_mask, overlong_penalty
from vrft.orchestrator.config.schema import TrainConfig
from vrft.orchestrator.core.records import PromptGroup, PromptItem, ScoredCompletion, to_sample
from vrft.orchestrator.runtime.session import Actors, sync_weights
from vrft.orchestrator.train.parity import incomparable, parity_metrics
from vrft.orchestrator.train.schedule import check_staleness
from vrft.rollout.engine import Completion, SamplingParams
from vrft.rollout.turns import usage
from vrft.verifiers.rewards_tools import TRAJECTORY_KEY


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
        chunk = [it.inputs for it in items[first:first + per_call]]
        seed = (cfg.run.seed * 1_000_003 + step * 10_007 + refill_round * 1_009 + c) % 2**31
        calls[actors.workers.generate(chunk, sampling_for(cfg, seed), call=c)] = first
    return PendingRollout(items, calls, time.perf_counter(), actors.version)


def collect_and_score(actors: Actors, pending: PendingRollout) -> tuple[list[PromptGroup], dict[str, float]]:
    """One scored `PromptGroup` per prompt, in prompt order, and timings. Each call's completions
    go to the verifier pool as soon as that call returns; the pool's key is the completion record."""
    groups: list[PromptGroup | None] = [None] * len(pending.items)
    engine_seconds = 0.0
    waiting = list(pending.calls)
    collect_start = time.perf_counter()
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        result = actors.workers.take(done[0])
        if isinstance(result, ray.ObjectRef):  # its worker died: the same call, re-dispatched
            pending.calls[result] = pending.calls.pop(done[0])
            waiting.append(result)
            continue
        chunk_groups, seconds = result
        engine_seconds += seconds
        first = pending.calls[done[0]]
        for offset, completions in enumerate(chunk_groups):
            item = pending.items[first + offset]
            group = PromptGroup(item, [ScoredCompletion(c) for c in completions])
            groups[first + offset] = group
            for j, scored in enumerate(group.completions):  # scored by its own task's rewards
                trajectory = scored.completion.trajectory
                truth = item.ground_truth if trajectory is None else \
                    {**item.ground_truth, TRAJECTORY_KEY: trajectory.facts()}
                actors.pool.submit((first + offset, j), scored.completion.text, truth, route=item.task or "")
    rollout_done = time.perf_counter()
    scores = actors.pool.gather([(i, j) for i, g in enumerate(groups) for j in range(len(g.completions))])
    for i, group in enumerate(groups):
        for j, scored in enumerate(group.completions):
            scored.scores = scores[(i, j)]
    timings = {"time/rollout": rollout_done - collect_start,  # what the loop waited for
               "time/verify": time.perf_counter() - rollout_done,
               "time/engine_busy": engine_seconds}
    return groups, timings


def overlong_terms(cfg: TrainConfig, completions: list[ScoredCompletion]) -> torch.Tensor:
    """DAPO's soft overlong penalty of each completion (0 up to max_new_tokens - buffer)."""
    lengths = torch.tensor([len(c.completion.token_ids) for c in completions])
    return overlong_penalty(lengths, cfg.rollout.max_new_tokens, cfg.dapo.overlong_buffer,
                            cfg.dapo.overlong_penalty)


def shape_rewards(cfg: TrainConfig, groups: list[PromptGroup]) -> None:
    """Set every completion's reward: the verifiers' total plus DAPO's overlong penalty, if on."""
    flat = [c for g in groups for c in g.completions]
    # float32, as the learner's advantages are computed: the record holds what trains.
    rewards = torch.tensor([c.scores["total"] for c in flat], dtype=torch.float32)
    if cfg.dapo.overlong_buffer > 0:
        rewards = rewards + overlong_terms(cfg, flat)
    for c, r in zip(flat, rewards.tolist(), strict=True):
        c.reward = r


def select_groups(cfg: TrainConfig, groups: list[PromptGroup], max_groups: int | None = None) -> int:
    """Mark which groups train: all, or with dynamic sampling those of the first `max_groups`
    groups whose rewards differ. Returns how many are kept."""
    if not cfg.dapo.dynamic_sampling:
        for g in groups:
            g.kept = True
        return len(groups)
    rewards = torch.tensor([r for g in groups for r in g.rewards], dtype=torch.float32)
    group_ids = torch.tensor([i for i, g in enumerate(groups) for _ in g.completions], dtype=torch.long)
    informative = set(group_ids[dynamic_sampling_mask(rewards, group_ids)].tolist()) if len(rewards) else set()
    kept = sorted(informative)[:max_groups]  # refills may bring more than the batch needs
    for i, g in enumerate(groups):
        g.kept = i in kept
    return len(kept)


def build_batch(cfg: TrainConfig, groups: list[PromptGroup]) -> TrainBatch:
    """The learner's batch: one `Sample` per completion of every kept group, its group id the
    group's index in `groups`. The learner sets the advantages (see `record_advantages`)."""
    over_turn = cfg.rollout.tools is not None and cfg.rollout.tools.mask_cut_by_turns
    samples = [to_sample(g.item.inputs, c.completion.token_ids, c.completion.trajectory, group_id=i,
                         reward=c.reward, rollout_logprobs=c.completion.logprobs,
                         finish_reason=c.completion.finish_reason,
                         weight=0.0 if over_turn and c.completion.trajectory.cut_by_turns else 1.0)
               for i, g in enumerate(groups) if g.kept for c in g.completions]
    return TrainBatch(samples, max_completion_len=cfg.rollout.max_new_tokens)


def record_advantages(groups: list[PromptGroup], batch: TrainBatch) -> None:
    """Copy the learner's advantages back into the records (same order as `build_batch`)."""
    kept = [c for g in groups if g.kept for c in g.completions]
    for scored, sample in zip(kept, batch.samples, strict=True):
        scored.advantage = sample.advantage


def _means(scored: list[ScoredCompletion], accuracy: dict[str, str | None], prefix: str) -> dict[str, float]:
    """Mean of every component over the completions that have it, `mean` (of the totals) and
    `accuracy` (each completion's own task's accuracy component)."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    correct: list[float] = []
    for task, c in scored:
        for name, value in c.scores.items():
            sums[name] += value
            counts[name] += 1
        name = accuracy.get(task or "")
        if name is not None:
            correct.append(c.scores.get(name, 0.0))
    out = {f"{prefix}{name}": sums[name] / counts[name] for name in sums}
    out[f"{prefix}mean"] = out.pop(f"{prefix}total", 0.0)
    if correct:
        out[f"{prefix}accuracy"] = sum(correct) / len(correct)
    return out


def reward_metrics(groups: list[PromptGroup], accuracy: dict[str, str | None]) -> dict[str, float]:
    """`reward/<component>`, `reward/mean`, `reward/accuracy` over every completion, and the same per
    task (`reward/<task>/...`) when the rows name tasks. `accuracy`: route → accuracy component."""
    scored = [(g.item.task, c) for g in groups for c in g.completions]
    out = _means(scored, accuracy, "reward/")
    for task in sorted({t for t, _ in scored if t is not None}):
        out.update(_means([(t, c) for t, c in scored if t == task], accuracy, f"reward/{task}/"))
    return out


def collect_with_refill(cfg: TrainConfig, actors: Actors, pending: PendingRollout, refill=None,
                        ) -> tuple[list[PromptGroup], dict[str, float]]:
    """Collect, score and shape `pending`. With DAPO dynamic sampling and `refill(n, round) ->
    PendingRollout`, draw more prompts (up to `dapo.max_refills` rounds) until the groups whose
    rewards differ fill the batch; refill rounds append their groups."""
    groups, metrics = collect_and_score(actors, pending)
    shape_rewards(cfg, groups)
    rounds = cfg.dapo.max_refills if cfg.dapo.dynamic_sampling and refill else 0
    for round_ in range(1, rounds + 1):
        missing = len(pending.items) - select_groups(cfg, groups)
        if missing <= 0:
            break
        more, more_timings = collect_and_score(actors, refill(missing, round_))
        shape_rewards(cfg, more)
        groups += more
        for key, seconds in more_timings.items():
            metrics[key] += seconds
        metrics["dapo/refill_rounds"] = float(round_)
    if cfg.dapo.overlong_buffer > 0:  # over every completion scored this step, refills included
        metrics["reward/overlong_penalty"] = float(overlong_terms(cfg, [c for g in groups for c in g.completions]).mean())
    return groups, metrics


def group_metrics(cfg: TrainConfig, groups: list[PromptGroup], actors: Actors) -> dict[str, float]:
    completions = [c.completion for g in groups for c in g.completions]
    rewards = torch.tensor([r for g in groups for r in g.rewards], dtype=torch.float32)
    lengths = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.float32)
    group_std = torch.tensor([torch.tensor(g.rewards).std().item() for g in groups]) \
        if cfg.rollout.n > 1 else torch.zeros(1)
    oldest = min(g.policy_version for g in groups)
    staleness = check_staleness(actors.version, oldest, cfg.run.max_staleness)
    return {
        "reward/std": float(rewards.std()) if len(rewards) > 1 else 0.0,
        "groups/zero_std_frac": float((group_std < 1e-6).float().mean()),
        "response/length_mean": float(lengths.mean()),
        "response/truncated_frac": sum(c.finish_reason == "length" for c in completions) / len(completions),
        "rollout/tokens": float(lengths.sum()),
        "rollout/groups": float(len(groups)),  # scored this step, refills included
        "rollout/completions": float(len(completions)),
        "rollout/policy_version_min": float(oldest),
        "async/staleness": float(staleness),
        **tool_metrics(completions),
    }


def tool_metrics(completions: list[Completion]) -> dict[str, float]:
    """`rollout/<usage>` of multi-turn rollouts (rollout/turns.py `usage`); nothing for one-turn ones."""
    return {f"rollout/{k}": v for k, v in usage([c.trajectory for c in completions]).items()}


def grpo_step(cfg: TrainConfig, actors: Actors, pending: PendingRollout, step: int,
              accuracy: dict[str, str | None], launch_next=None, refill=None,
              observe=None, parity=None) -> dict[str, float]:
    """Train on `pending` (launched earlier). `launch_next()`, if given, is called once this step's
    rollouts are collected and before learning, so the next rollouts overlap with it (async).
    `accuracy`: each task route's accuracy component. `refill`: see `collect_with_refill`. A batch left empty by dynamic sampling trains nothing
    (the policy version stays) and is counted in `dapo/skipped_steps`. `parity`: the run's
    `parity.ParityWatch` (start-up checks; the `parity/*` metrics are logged without it too)."""
    start = time.perf_counter()
    groups, metrics = collect_with_refill(cfg, actors, pending, refill)
    if parity is not None:  # start-up: before the next rollouts queue on the workers
        parity.check_prompts(actors.workers, groups)
    if launch_next is not None:
        launch_next()
    kept = select_groups(cfg, groups, max_groups=len(pending.items))
    if cfg.dapo.dynamic_sampling:
        metrics["dapo/groups_kept"] = float(kept)
        metrics["dapo/groups_dropped"] = float(len(groups) - kept)
    batch = build_batch(cfg, groups)
    metrics.update(reward_metrics(groups, accuracy))
    metrics.update(group_metrics(cfg, groups, actors))
    colocated = cfg.rollout.placement == "colocated"
    if colocated:  # engines give their GPU memory to the learner, and take it back for the sync
        ray.get([w.sleep.remote() for w in actors.workers])
    learn_start = time.perf_counter()
    learner_metrics = actors.learner.train_step(batch) if batch.samples else {}
    metrics["time/learn"] = time.perf_counter() - learn_start
    if colocated:
        ray.get([w.wake_up.remote() for w in actors.workers])
    record_advantages(groups, batch)
    metrics.update({f"learner/{k}": v for k, v in learner_metrics.items()})
    metrics.update(parity_metrics(cfg, groups, learner_metrics, actors.version))
    if parity is not None:  # may stop the run at start-up, before the weights go out
        parity.check_step(step, metrics, incomparable(cfg, groups, actors.version))
    if batch.samples:
        metrics.update(sync_weights(actors, actors.version + 1, cfg.sync.bucket_mb))
    else:
        metrics["dapo/skipped_steps"] = 1.0
    metrics["time/step"] = time.perf_counter() - start
    metrics["throughput/tokens_per_s"] = metrics["rollout/tokens"] / metrics["time/step"]
    metrics["policy_version"] = float(actors.version)
    metrics.update(actors.pool.stats())
    metrics["rollout/worker_restarts"] = float(actors.workers.restarts)  # since this process started
    metrics["rollout/redispatched"] = float(actors.workers.redispatched)
    if observe is not None:  # `observe(groups) -> metrics`: alarms and rollout records (rollout_log.py),
        metrics.update(observe(groups))  # read once the advantages are in; not timed in time/step
    return metrics
