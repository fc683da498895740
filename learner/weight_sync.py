"""Sending end of weight sync: learner rank 0 broadcasts the full weights in flat buckets.

Wire format (agreed with rollout/weight_sync.py as plain data): a plan is a list of buckets
`{"dtype": str, "numel": int, "entries": [(name, shape), ...]}`; each bucket travels as one flat
tensor. Under ZeRO-3 every learner rank takes part in gathering a bucket's parameters (the gather is
collective), bucket by bucket, so the full model never sits on one rank at once; only rank 0 sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from datetime import timedelta

import torch
import torch.distributed as dist


def join_group(master_addr: str, port: int, rank: int, world_size: int, backend: str,
               timeout_s: float = 300.0) -> dist.ProcessGroup:
    """A group outside torch's default (DeepSpeed's) group: learner rank 0 + every rollout worker."""
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


def _full_shape(param: torch.nn.Parameter) -> list[int]:
    return list(getattr(param, "ds_shape", param.shape))  # ZeRO-3 keeps the full shape aside


def make_plan(named_params: list[tuple[str, torch.nn.Parameter]], dtype: torch.dtype,
              bucket_mb: float) -> list[dict]:
    limit = max(1, int(bucket_mb * 2**20 * 8) // torch.finfo(dtype).bits)  # elements per bucket
    plan: list[dict] = []
    dtype_name = str(dtype).removeprefix("torch.")
    for name, param in named_params:
        shape = _full_shape(param)
        numel = int(torch.Size(shape).numel())
        if not plan or (plan[-1]["numel"] + numel > limit and plan[-1]["entries"]):
            plan.append({"dtype": dtype_name, "numel": 0, "entries": []})
        plan[-1]["entries"].append((name, shape))
        plan[-1]["numel"] += numel
    return plan


def iter_buckets(named_params: list[tuple[str, torch.nn.Parameter]], plan: list[dict],
                 zero3: bool) -> Iterator[torch.Tensor]:
    """Yield each bucket's flat tensor (on every rank; under ZeRO-3 all ranks must iterate)."""
    params = dict(named_params)
    for bucket in plan:
        members = [params[name] for name, _ in bucket["entries"]]
        if zero3:
            import deepspeed
            ctx = deepspeed.zero.GatheredParameters(members, modifier_rank=None)
        else:
            ctx = nullcontext()
        with ctx, torch.no_grad():
            dtype = getattr(torch, bucket["dtype"])
            yield torch.cat([p.detach().reshape(-1).to(dtype) for p in members])


def send_buckets(group: dist.ProcessGroup, buckets: Iterator[torch.Tensor], device: torch.device) -> int:
    sent = 0
    for flat in buckets:
        flat = flat.to(device).contiguous()
        group.broadcast(flat, 0).wait()
        sent += flat.numel() * flat.element_size()
    return sent
