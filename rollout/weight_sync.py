"""Receiving end of weight sync: join the learner's side group and unpack flat buckets.

Wire format (agreed with learner/weight_sync.py as plain data, no import between the two):
a plan is a list of buckets, each `{"dtype": "float32", "numel": int, "entries": [(name, shape), ...]}`;
rank 0 of the group (the learner) broadcasts one flat 1-D tensor per bucket, in plan order, and the
tensors of a bucket are its entries laid end to end. One collective per bucket, never one per
parameter: per-parameter RPCs are the classic bottleneck of peer systems.
"""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist


def join_group(master_addr: str, port: int, rank: int, world_size: int, backend: str,
               timeout_s: float = 300.0) -> dist.ProcessGroup:
    """A process group outside torch's default one, so it coexists with the learner's DeepSpeed group."""
    timeout = timedelta(seconds=timeout_s)
    store = dist.TCPStore(master_addr, port, world_size, is_master=(rank == 0), timeout=timeout,
                          wait_for_workers=False)
    if backend == "gloo":
        return dist.ProcessGroupGloo(store, rank, world_size, timeout)
    if backend == "nccl":
        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = timeout
        return dist.ProcessGroupNCCL(store, rank, world_size, opts)
    raise ValueError(f"unknown weight-sync backend {backend!r}; choose gloo or nccl")


def unpack_bucket(flat: torch.Tensor, entries: list[tuple[str, list[int]]]) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name, shape in entries:
        numel = 1
        for dim in shape:
            numel *= dim
        out[name] = flat[offset:offset + numel].view(shape)
        offset += numel
    return out


def bucket_buffer(buffers: dict[torch.dtype, torch.Tensor], dtype: torch.dtype, numel: int,
                  device: torch.device) -> torch.Tensor:
    """A flat tensor for one bucket. On CPU, one buffer per dtype kept for every bucket and every
    sync (it grows to the largest bucket, at most sync.bucket_mb): a fresh one per bucket is a
    fresh mmap whose page faults, on both ends, made up half of a sync's time (docs/measurements.md).
    On a GPU, torch's caching allocator already reuses the memory, and a kept buffer would hold a
    bucket of GPU memory through rollouts and training."""
    if device.type != "cpu":
        return torch.empty(numel, dtype=dtype, device=device)
    buffer = buffers.get(dtype)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[dtype] = torch.empty(numel, dtype=dtype, device=device)
    return buffer[:numel]


class WeightReceiver:
    def __init__(self, device: torch.device):
        self.device = device
        self.group: dist.ProcessGroup | None = None
        self._buffers: dict[torch.dtype, torch.Tensor] = {}

    def join(self, master_addr: str, port: int, rank: int, world_size: int, backend: str,
             timeout_s: float = 300.0) -> None:
        self.group = None  # leave the old group (a re-formed one replaces it) before joining
        self.group = join_group(master_addr, port, rank, world_size, backend, timeout_s)

    def receive(self, plan: list[dict]):
        """Yield one dict of named tensors per bucket as it arrives: views of a reused buffer, valid
        until the next bucket is asked for (the caller copies each into its model first)."""
        if self.group is None:
            raise RuntimeError("weight sync: receive() before join()")
        for bucket in plan:
            flat = bucket_buffer(self._buffers, getattr(torch, bucket["dtype"]), bucket["numel"], self.device)
            self.group.broadcast(flat, 0).wait()
            yield unpack_bucket(flat, bucket["entries"])
