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


class WeightReceiver:
    def __init__(self, device: torch.device):
        self.device = device
        self.group: dist.ProcessGroup | None = None

    def join(self, master_addr: str, port: int, rank: int, world_size: int, backend: str,
             timeout_s: float = 300.0) -> None:
        self.group = None  # leave the old group (a re-formed one replaces it) before joining
        self.group = join_group(master_addr, port, rank, world_size, backend, timeout_s)

    def receive(self, plan: list[dict]):
        """Yield one dict of named tensors per bucket as it arrives (the caller loads each)."""
        if self.group is None:
            raise RuntimeError("weight sync: receive() before join()")
        for bucket in plan:
            flat = torch.empty(bucket["numel"], dtype=getattr(torch, bucket["dtype"]), device=self.device)
            self.group.broadcast(flat, 0).wait()
            yield unpack_bucket(flat, bucket["entries"])
