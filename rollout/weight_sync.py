"""Receiving end of weight sync for vrft's own transports: join the learner's side group and
unpack flat buckets, or map a bucket shared by CUDA IPC.

Wire format (agreed with learner/transfer.py as plain data; the group both ends join is vrft/wire.py's):
a plan is
a list of buckets, each `{"dtype": "float32", "numel": int, "entries": [(name, shape), ...]}`; the
tensors of a bucket are its entries laid end to end. Over a group, rank 0 (the learner) broadcasts
one flat 1-D tensor per bucket, in plan order (`update_weights({"plan": plan})`); by CUDA IPC each
`update_weights({"bucket": bucket, "ipc_handle": ...})` carries one bucket. One transfer per bucket,
never one per parameter: per-parameter RPCs are the classic bottleneck of peer systems.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from vrft.wire import join_group  # noqa: F401 (the receivers join through this module)


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


def ipc_bucket(handle: dict[str, tuple], device: torch.device) -> torch.Tensor:
    """The learner's bucket on this GPU, mapped from its CUDA IPC handle (`{gpu uuid: torch's
    rebuild arguments}`, torch.multiprocessing.reductions, as vLLM's IPC engine ships them): the
    handle of this device's UUID, opened on this process's index of that device."""
    from torch.multiprocessing.reductions import rebuild_cuda_tensor

    uuid = str(torch.cuda.get_device_properties(device).uuid)
    if uuid not in handle:
        raise ValueError(f"weight sync: no CUDA IPC handle for this GPU ({uuid}); the learner sent "
                         f"{sorted(handle)}: is the learner rank on this engine's GPU (colocated)?")
    args = list(handle[uuid])
    args[6] = device.index if device.index is not None else torch.cuda.current_device()  # this process's index
    return rebuild_cuda_tensor(*args)


class WeightReceiver:
    """The receiving end for an engine that loads tensors in its own process (the transformers
    engine): `init` with the learner's init info, then `receive` each `update_weights` payload."""

    def __init__(self, device: torch.device):
        self.device = device
        self.group: dist.ProcessGroup | None = None
        self.backend: str | None = None
        self._buffers: dict[torch.dtype, torch.Tensor] = {}

    def init(self, info: dict) -> None:
        """gloo/nccl: join the learner's group as rank `rank_offset` (leaving any earlier group);
        ipc: nothing to join."""
        backend = info.get("backend")
        self.group, self.backend = None, backend  # leave the old group before joining
        if backend == "ipc":
            if self.device.type != "cuda":
                raise ValueError("weight sync over CUDA IPC needs the engine on a GPU")
            return
        self.group = join_group(info["master_address"], info["master_port"], info["rank_offset"],
                                info["world_size"], backend, info.get("timeout_s", 300.0))

    def receive(self, update: dict):
        """Yield one dict of named tensors per bucket: views valid until the next is asked for (the
        caller copies each into its model first)."""
        if self.backend is None:
            raise RuntimeError("weight sync: update_weights before init_weight_transfer_engine")
        if self.backend == "ipc":
            bucket = update["bucket"]
            flat = ipc_bucket(update["ipc_handle"], self.device)
            yield unpack_bucket(flat[:bucket["numel"]], bucket["entries"])
            return
        for bucket in update["plan"]:
            flat = bucket_buffer(self._buffers, getattr(torch, bucket["dtype"]), bucket["numel"], self.device)
            self.group.broadcast(flat, 0).wait()
            yield unpack_bucket(flat, bucket["entries"])
