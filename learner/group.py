"""`LearnerGroup`: the DeepSpeed learner ranks, driven together from the orchestrator.

    group = LearnerGroup(model_path, cfg, total_steps)
    metrics = group.train_step(TrainBatch(samples))      # one optimizer step
    group.broadcast_weights(version)                     # while rollout workers receive
"""

from __future__ import annotations

import ray

from learner.batch import Sample, TrainBatch, split_micro_batches
from learner.config import LearnerConfig
from learner.worker import LearnerRank


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
    filler = micro_batches[0][0]
    for shard in shards:
        while len(shard) < per_rank:
            shard.append([Sample(prompt_ids=filler.prompt_ids, completion_ids=filler.completion_ids,
                                 pixel_values=filler.pixel_values, image_grid_thw=filler.image_grid_thw,
                                 prompt_mm_token_type_ids=filler.prompt_mm_token_type_ids, weight=0.0)])
    return shards


class LearnerGroup:
    def __init__(self, model_path: str, cfg: LearnerConfig, total_steps: int, pad_id: int,
                 trust_remote_code: bool = False, temperature: float = 1.0):
        self.cfg, self.pad_id, self.temperature = cfg, pad_id, temperature
        options = {"num_cpus": cfg.num_cpus_per_rank, "num_gpus": cfg.num_gpus_per_rank}
        self.ranks = [LearnerRank.options(**options).remote(r, cfg.world_size, cfg.model_dump())
                      for r in range(cfg.world_size)]
        addr, port = ray.get(self.ranks[0].address.remote())
        ray.get([r.setup.remote(addr, port, model_path, total_steps, trust_remote_code) for r in self.ranks])
        self._plan: list[dict] | None = None

    def train_step(self, batch: TrainBatch, mode: str = "grpo") -> dict[str, float]:
        real = [s for s in batch.samples if s.weight > 0]
        if not real:
            raise ValueError("train_step: the batch has no samples")
        micro = split_micro_batches(real, self.cfg.micro_batch_size, self.cfg.token_budget)
        norms = {"tokens": float(sum(len(s.completion_ids) for s in real)), "seqs": float(len(real)),
                 "max_len": float(batch.max_completion_len or max(len(s.completion_ids) for s in real))}
        shards = assign_to_ranks(micro, self.cfg.world_size)
        results = ray.get([rank.train_step.remote(shard, norms, self.pad_id, mode, self.temperature)
                           for rank, shard in zip(self.ranks, shards, strict=True)])
        return merge_rank_metrics(results)

    def logprobs(self, samples: list[Sample]) -> list[list[float]]:
        refs = [rank.logprobs.remote(samples, self.pad_id, self.temperature) for rank in self.ranks]
        return ray.get(refs)[0]

    # ---- weight sync ----------------------------------------------------------------------
    def sync_endpoint(self) -> tuple[str, int]:
        return ray.get(self.ranks[0].address.remote())

    def join_weight_sync(self, addr: str, port: int, world_size: int, backend: str) -> ray.ObjectRef:
        """Non-blocking: the group forms once every rollout worker joins too."""
        return self.ranks[0].join_weight_sync.remote(addr, port, world_size, backend)

    def plan(self, bucket_mb: float) -> list[dict]:
        if self._plan is None:
            self._plan = ray.get(self.ranks[0].sync_plan.remote(bucket_mb))
        return self._plan

    def broadcast_weights(self, version: int, bucket_mb: float = 256.0) -> int:
        """Blocks until rank 0 has sent every bucket; the receivers must be listening."""
        plan = self.plan(bucket_mb)
        return ray.get([r.broadcast_weights.remote(plan, version) for r in self.ranks])[0]

    # ---- checkpoints ----------------------------------------------------------------------
    def save(self, path: str, tag: str = "latest") -> None:
        ray.get([r.save.remote(path, tag) for r in self.ranks])

    def load(self, path: str, tag: str = "latest") -> int:
        return ray.get([r.load.remote(path, tag) for r in self.ranks])[0]

    def save_hf(self, path: str) -> None:
        ray.get([r.save_hf.remote(path) for r in self.ranks])

    def shutdown(self) -> None:
        for rank in self.ranks:
            ray.kill(rank)


def merge_rank_metrics(results: list[dict[str, float]]) -> dict[str, float]:
    """Loss contributions add up over ranks; the other figures are token-weighted means."""
    tokens = sum(r.get("tokens", 0.0) for r in results)
    merged: dict[str, float] = {"loss": sum(r.get("loss", 0.0) for r in results), "tokens": tokens}
    for key in {k for r in results for k in r} - {"loss", "tokens", "grad_norm", "lr"}:
        merged[key] = sum(r.get(key, 0.0) * r.get("tokens", 0.0) for r in results) / max(tokens, 1.0)
    for key in ("grad_norm", "lr"):
        if key in results[0]:
            merged[key] = results[0][key]
    return merged
