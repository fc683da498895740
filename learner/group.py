"""`LearnerGroup`: the DeepSpeed learner ranks, driven together from the orchestrator.

    group = LearnerGroup(model_path, cfg, total_steps, pad_id)
    metrics = group.train_step(TrainBatch(samples))      # num_iterations optimizer steps
    group.init_weight_transfer(backend, client, options)  # once, and again after a worker is replaced
    group.send_weights(version)                          # rank 0 drives the engines through `client`
"""

from __future__ import annotations

import time
from dataclasses import replace

import ray
import torch
from ray.exceptions import RayActorError, RayError, RayTaskError

from vrft.learner.algorithms import get_advantage
from vrft.learner.batch import Sample, TrainBatch, counted, split_micro_batches
from vrft.learner.config import LearnerConfig
from vrft.learner.worker import LearnerRank

# Each rank is a Ray actor; the class itself stays plain (the GPU check runs one without Ray).
RemoteLearnerRank = ray.remote(LearnerRank)

# After one rank's call fails, how long the others get to report: a rank that died makes its
# peers' collectives fail too, and the dead one, not a peer, is what the error should name.
BLAME_GRACE_S = 5.0


class RankFailed(RuntimeError):
    """A learner rank's call failed: its process died (`died`), it raised, or it did not answer
    within a timeout. `error` is the Ray error (or TimeoutError); the orchestrator words it."""

    def __init__(self, rank: int, pid: int | None, error: BaseException):
        self.rank, self.pid, self.error = rank, pid, error
        # A task error's own first line is Ray's frame ("ray::LearnerRank.save() (pid=…)"): name
        # what the rank raised instead.
        cause = error.cause if isinstance(error, RayTaskError) and error.cause is not None else None
        first = (str(cause or error).strip().splitlines() or [""])[0]
        what = f"{type(cause).__name__}: {first}" if cause is not None else first or type(error).__name__
        super().__init__(f"learner rank {rank}" + (f" (pid {pid})" if pid else "") + f": {what}")

    @property
    def died(self) -> bool:
        return isinstance(self.error, RayActorError)


def assign_to_ranks(micro_batches: list[list[Sample]], world_size: int) -> list[list[list[Sample]]]:
    """Give every rank the same number of micro-batches (ZeRO reduces per backward, so a rank with
    fewer would hang the others), balancing padded tokens; pad with zero-weight copies."""
    per_rank = -(-len(micro_batches) // world_size)
    shards: list[list[list[Sample]]] = [[] for _ in range(world_size)]
    load = [0] * world_size
    for micro in sorted(micro_batches, key=lambda m: -max(s.length for s in m) * len(m)):
        rank = min((r for r in range(world_size) if len(shards[r]) < per_rank), key=lambda r: load[r])
        shards[rank].append(micro)
        load[rank] += max(s.length for s in micro) * len(micro)
    filler = micro_batches[0][0]  # a real sample's shape, carrying no loss, advantage or IS terms
    for shard in shards:
        while len(shard) < per_rank:
            shard.append([replace(filler, weight=0.0, advantage=0.0, rollout_logprobs=None)])
    return shards


def batch_advantages(samples: list[Sample], cfg: LearnerConfig, kl_sums: list[float] | None = None,
                     ) -> list[float]:
    """The one place the GRPO family's advantages are computed: the configured estimator over each
    sample's reward, grouped by `group_id`. With the KL in the reward (`kl_sums`, veRL's
    use_kl_in_reward; InstructGPT's shaped reward) the reward is `r - β Σ_t KL_t`, summed in float64
    since it adds many per-token terms."""
    if any(s.reward is None for s in samples):
        raise ValueError("GRPO needs every sample's reward (Sample.reward)")
    if kl_sums is None:
        rewards = torch.tensor([s.reward for s in samples], dtype=torch.float32)
    else:
        rewards = torch.tensor([s.reward - cfg.beta * kl for s, kl in zip(samples, kl_sums, strict=True)],
                               dtype=torch.float64)
    groups = torch.tensor([s.group_id for s in samples], dtype=torch.long)
    return get_advantage(cfg.advantage)(rewards, groups, **cfg.advantage_options).tolist()


class LearnerGroup:
    def __init__(self, model_path: str, cfg: LearnerConfig, total_steps: int, pad_id: int,
                 trust_remote_code: bool = False, temperature: float = 1.0,
                 rank_options: list[dict] | None = None, start_timeout_s: float | None = None):
        """`rank_options[r]`: Ray actor options for rank r (the orchestrator's placement group
        bundles); by default each rank asks for num_cpus/num_gpus_per_rank anywhere. Any call
        that fails raises `RankFailed` naming the rank."""
        self.cfg, self.pad_id, self.temperature = cfg, pad_id, temperature
        default = {"num_cpus": cfg.num_cpus_per_rank, "num_gpus": cfg.num_gpus_per_rank}
        options = rank_options or [default] * cfg.world_size
        self.ranks = [RemoteLearnerRank.options(**options[r]).remote(r, cfg.world_size, cfg.model_dump())
                      for r in range(cfg.world_size)]
        self.pids: list[int | None] = [None] * cfg.world_size
        self._plan: list[dict] | None = None
        try:  # `start_timeout_s` bounds start-up (model load, DeepSpeed init, its op's first build)
            addr, port = self._get([self.ranks[0].address.remote()], start_timeout_s, "did not start")[0]
            infos = self._get([r.setup.remote(addr, port, model_path, total_steps, trust_remote_code)
                               for r in self.ranks], start_timeout_s, "did not start")
        except RankFailed:
            self.shutdown()  # no half-started group is left holding resources
            raise
        self.pids = [info["pid"] for info in infos]
        self.info: dict = infos[0]

    def _get(self, refs: list, timeout_s: float | None = None, late: str = "did not answer") -> list:
        """Every rank's result (refs in rank order), failing fast: the first failure raises
        `RankFailed` naming the rank to blame, without waiting for the others' collectives to time
        out. `timeout_s`: a rank that has not answered by then fails as `late`."""
        rank_of = {ref: r for r, ref in enumerate(refs)}
        pending = list(refs)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pending:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, pending = ray.wait(pending, num_returns=1, timeout=wait)
            if not done:
                late_rank = rank_of[pending[0]]
                raise RankFailed(late_rank, self.pids[late_rank],
                                 TimeoutError(f"{late} within {timeout_s:g} s"))
            try:
                ray.get(done[0])
            except RayError as err:
                raise self._blame(rank_of, done[0], err, pending) from None
        return ray.get(list(refs))

    def _blame(self, rank_of: dict, ref, err: RayError, pending: list) -> RankFailed:
        culprit, error = rank_of[ref], err
        if not isinstance(err, RayActorError) and pending:
            done, _ = ray.wait(pending, num_returns=len(pending), timeout=BLAME_GRACE_S)
            for other in done:
                try:
                    ray.get(other)  # fetched: Ray would otherwise print it as unhandled
                except RayActorError as dead:
                    culprit, error = rank_of[other], dead
                except RayError:
                    pass
        return RankFailed(culprit, self.pids[culprit], error)

    def train_step(self, batch: TrainBatch, mode: str = "grpo") -> dict[str, float]:
        """One rollout batch: `num_iterations` optimizer steps in GRPO mode, one in SFT mode. In
        GRPO mode it first sets every sample's `advantage` (`batch_advantages`), which the caller
        may read back."""
        real = [s for s in batch.samples if s.weight > 0]
        if not real:
            raise ValueError("train_step: the batch has no samples")
        # The normalising counts cover the samples whose tokens enter the loss: with
        # mask_truncated, a truncated completion is neither counted nor trained on.
        trained = counted(real, self.cfg.mask_truncated and mode == "grpo")
        if not trained:
            return {"loss": 0.0, "tokens": 0.0, "skipped": 1.0}
        norms = {"tokens": float(sum(len(s.completion_ids) for s in trained)), "seqs": float(len(trained)),
                 "max_len": float(batch.max_completion_len or max(len(s.completion_ids) for s in real))}
        micro = split_micro_batches(real, self.cfg.micro_batch_size, self.cfg.token_budget)
        shards = assign_to_ranks(micro, self.cfg.world_size)
        # SFT is plain cross-entropy: the sampling temperature has nothing to do with it.
        temperature = self.temperature if mode == "grpo" else 1.0
        extra: dict[str, float] = {}
        if mode == "grpo" and self.cfg.kl_in_reward and self.cfg.uses_reference:
            # The reference KL needs a forward pass on the ranks first: they keep the collated
            # batch, return Σ_t KL_t per sample, and train on it once the advantages are known.
            kl_sums = self._get([rank.prepare.remote(shard, self.pad_id, mode, temperature)
                                 for rank, shard in zip(self.ranks, shards, strict=True)])
            flat = [(s, kl) for shard, kls in zip(shards, kl_sums, strict=True)
                    for micro, micro_kls in zip(shard, kls, strict=True)
                    for s, kl in zip(micro, micro_kls, strict=True) if s.weight > 0]
            advantages = batch_advantages([s for s, _ in flat], self.cfg, [kl for _, kl in flat])
            for (s, _), adv in zip(flat, advantages, strict=True):
                s.advantage = adv
            layout = [[[s.advantage if s.weight > 0 else 0.0 for s in m] for m in shard] for shard in shards]
            refs = [rank.train_step.remote(None, norms, self.pad_id, mode, temperature, adv)
                    for rank, adv in zip(self.ranks, layout, strict=True)]
            kl_total = sum(kl for _, kl in flat)
            extra = {"kl": kl_total / max(sum(len(s.completion_ids) for s, _ in flat), 1),
                     "kl_penalty_mean": self.cfg.beta * kl_total / len(flat)}
        else:
            if mode == "grpo":
                for s, adv in zip(real, batch_advantages(real, self.cfg), strict=True):
                    s.advantage = adv
            refs = [rank.train_step.remote(shard, norms, self.pad_id, mode, temperature)
                    for rank, shard in zip(self.ranks, shards, strict=True)]
        merged = merge_rank_metrics(self._get(refs))
        merged.update(extra)
        merged["micro_batches"] = float(len(micro))
        if len(trained) < len(real):
            merged["truncated_masked"] = float(len(real) - len(trained))
        return merged

    def logprobs(self, samples: list[Sample]) -> list[list[float]]:
        refs = [rank.logprobs.remote(samples, self.pad_id, self.temperature) for rank in self.ranks]
        return self._get(refs)[0]

    # ---- weight sync ----------------------------------------------------------------------
    def sync_endpoint(self) -> tuple[str, int]:
        """A fresh address for a new weight-sync group (each formation gets its own store)."""
        return self._get([self.ranks[0].address.remote()])[0]

    def init_weight_transfer(self, backend: str, client, options: dict, timeout_s: float | None = None) -> None:
        """Every rank joins a new weight transfer (learner/transfer.py); rank 0 drives `client`, the
        rollout side's four calls, so this returns once the engines have joined too."""
        self._plan = None
        self._get([r.init_weight_transfer.remote(backend, client, options) for r in self.ranks], timeout_s,
                  "did not join the weight transfer")

    def plan(self, bucket_mb: float) -> list[dict]:
        if self._plan is None:
            self._plan = self._get([self.ranks[0].sync_plan.remote(bucket_mb)])[0]
        return self._plan

    def send_weights(self, version: int, timeout_s: float | None = None) -> dict[str, float]:
        """Every rank sends (rank 0) or helps gather (ZeRO-3); returns rank 0's bytes, buckets and
        seconds. `timeout_s` bounds the whole send: a transport that cannot notice a lost peer
        (NCCL) fails here, named, instead of hanging."""
        return self._get([r.send_weights.remote(version) for r in self.ranks], timeout_s,
                         "did not finish the weight sync")[0]

    # ---- checkpoints ----------------------------------------------------------------------
    def save(self, path: str, tag: str = "latest") -> None:
        self._get([r.save.remote(path, tag) for r in self.ranks])

    def load(self, path: str, tag: str = "latest") -> int:
        return self._get([r.load.remote(path, tag) for r in self.ranks])[0]

    def save_hf(self, path: str, extra_dir: str | None = None) -> None:
        """A HF folder written whole then renamed; `extra_dir`'s files (a processor's) go in with it."""
        self._get([r.save_hf.remote(path, extra_dir) for r in self.ranks])

    def shutdown(self) -> None:
        for rank in self.ranks:
            try:
                ray.kill(rank, no_restart=True)
            except Exception:  # already gone with the cluster
                pass


def merge_rank_metrics(results: list[dict[str, float]]) -> dict[str, float]:
    """Loss contributions add up over ranks; `*_max` figures are maxima; the other figures are
    token-weighted means."""
    tokens = sum(r.get("tokens", 0.0) for r in results)
    merged: dict[str, float] = {"loss": sum(r.get("loss", 0.0) for r in results), "tokens": tokens}
    for key in {k for r in results for k in r} - {"loss", "tokens", "grad_norm", "lr"}:
        if key.endswith("_max"):
            merged[key] = max(r[key] for r in results if key in r)
        else:
            merged[key] = sum(r.get(key, 0.0) * r.get("tokens", 0.0) for r in results) / max(tokens, 1.0)
    for key in ("grad_norm", "lr"):
        if key in results[0]:
            merged[key] = results[0][key]
    return merged
