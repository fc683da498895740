"""Sending end of weight sync: learner rank 0 broadcasts the weights in flat buckets.

Wire format (agreed with rollout/weight_sync.py as plain data): a plan is a list of buckets
`{"dtype": str, "numel": int, "entries": [(name, shape), ...]}`; each bucket travels as one flat
tensor. Names are the plain transformers model's `named_parameters()` names: with LoRA each entry
is the merged `W + scaling * B @ A` under the base weight's name (vrft.learner.lora). Only tensors that
training can change are sent; the rest equal what the engines loaded from the same checkpoint.
Under ZeRO-3 every learner rank takes part in gathering a bucket's parameters (one collective
gather per bucket, never one per parameter), bucket by bucket, so the full model never sits on
one rank at once; only rank 0 sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

import torch
import torch.distributed as dist

from vrft.learner.lora import Entry


def loopback_interface() -> str:
    """The loopback interface's name (`lo` on Linux, `lo0` on macOS), for GLOO_SOCKET_IFNAME."""
    import socket

    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in names if n in ("lo", "lo0")), "lo")


def make_plan(entries: list[Entry], dtype: torch.dtype, bucket_mb: float) -> list[dict]:
    limit = max(1, int(bucket_mb * 2**20 * 8) // torch.finfo(dtype).bits)  # elements per bucket
    plan: list[dict] = []
    dtype_name = str(dtype).removeprefix("torch.")
    for entry in entries:
        numel = int(torch.Size(entry.shape).numel())
        if not plan or (plan[-1]["numel"] + numel > limit and plan[-1]["entries"]):
            plan.append({"dtype": dtype_name, "numel": 0, "entries": []})
        plan[-1]["entries"].append((entry.name, list(entry.shape)))
        plan[-1]["numel"] += numel
    return plan


def _gathered(members: list[Entry], zero3: bool):
    """Under ZeRO-3, one collective gather of every parameter the members are computed from."""
    if not zero3:
        return nullcontext()
    import deepspeed

    sources = list({id(p): p for e in members for p in e.sources}.values())
    return deepspeed.zero.GatheredParameters(sources, modifier_rank=None)


def iter_buckets(entries: list[Entry], plan: list[dict], zero3: bool,
                 buffers: dict[torch.dtype, torch.Tensor] | None = None, keep: bool = True,
                 ) -> Iterator[torch.Tensor | None]:
    """Yield each bucket's flat tensor (on every rank; under ZeRO-3 all ranks must iterate). With
    `buffers`, a CPU bucket is written into a buffer kept there and reused by the next bucket and
    the next sync (each tensor is valid until the next is asked for): a fresh one per bucket costs
    its page faults (rollout/weight_sync.py `bucket_buffer`, the receiving end's twin). A rank with
    `keep=False` (ZeRO-3's non-sending ranks) takes part in each gather and yields None: only the
    sender pays for the concatenation. Plan entries are looked up by position, so a plan whose
    names were renamed for the receiver (transfer.py) still finds its entries."""
    for bucket, members in zip(plan, _plan_members(entries, plan), strict=True):
        with _gathered(members, zero3), torch.no_grad():
            if not keep:
                yield None
                continue
            dtype = getattr(torch, bucket["dtype"])
            parts = [e.value().reshape(-1).to(dtype) for e in members]
            if buffers is None or parts[0].device.type != "cpu":
                yield torch.cat(parts)
                continue
            buffer = buffers.get(dtype)
            if buffer is None or buffer.numel() < bucket["numel"]:  # grows to the largest bucket
                buffer = buffers[dtype] = torch.empty(bucket["numel"], dtype=dtype)
            yield torch.cat(parts, out=buffer[:bucket["numel"]])


def iter_tensors(entries: list[Entry], zero3: bool, keep: bool = True, bucket_mb: float = 512.0,
                 ) -> Iterator[tuple[str, torch.Tensor]]:
    """`(name, CPU copy)` of every entry, gathered bucket by bucket (every rank must iterate under
    ZeRO-3); a rank with `keep=False` takes part in the gathers but yields nothing."""
    by_name = {e.name: e for e in entries}
    for bucket in make_plan(entries, torch.float32, bucket_mb):
        members = [by_name[name] for name, _ in bucket["entries"]]
        with _gathered(members, zero3), torch.no_grad():
            copies = [(e.name, e.value().to("cpu", copy=True)) for e in members] if keep else []
        yield from copies


def _plan_members(entries: list[Entry], plan: list[dict]) -> list[list[Entry]]:
    """Each bucket's entries, in plan order (a plan is made from `entries` in their order)."""
    out, i = [], 0
    for bucket in plan:
        out.append(entries[i:i + len(bucket["entries"])])
        i += len(bucket["entries"])
    if i != len(entries):
        raise ValueError(f"weight sync: the plan holds {i} tensors, the model {len(entries)}")
    return out


def send_buckets(group: dist.ProcessGroup, buckets: Iterator[torch.Tensor], device: torch.device) -> int:
    """Broadcast every bucket; bytes sent. After a failed send (a receiver died) the remaining
    buckets are still walked, unsent, before the error is raised: under ZeRO-3 the other learner
    ranks gather each bucket with this one, and would otherwise wait for it until their timeout."""
    sent, failure = 0, None
    for flat in buckets:
        if failure is not None or flat is None:
            continue
        try:
            flat = flat.to(device).contiguous()
            group.broadcast(flat, 0).wait()
            sent += flat.numel() * flat.element_size()
        except RuntimeError as err:  # gloo/NCCL: a peer gone, or the sync timeout
            failure = err
    if failure is not None:
        raise failure
    return sent
