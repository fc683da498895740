"""The trainer side of weight sync, one interface for every transport.

The receiving side is the rollout engines' four calls of vLLM's weight-sync client protocol
(`init_weight_transfer_engine`, `start_weight_update`, `update_weights`, `finish_weight_update`),
reached through a *client*: any object with those four methods, which learner rank 0 calls (the
orchestrator passes one that fans each call out to every rollout worker). Every learner rank holds
a transfer and calls `send_weights(version)` together (ZeRO-3 gathers are collective); only rank 0
talks to the client and sends.

Which transfer sends:

| engines                   | where               | transfer                                               |
|---------------------------|---------------------|--------------------------------------------------------|
| vLLM                      | GPUs, separate      | vLLM's NCCL trainer engine (`nccl`)                     |
| vLLM                      | GPUs, colocated     | vLLM's CUDA-IPC trainer engine (`ipc`): never NCCL between two ranks on one GPU |
| transformers, or any CPU  | anywhere            | `BucketTransfer` below: flat buckets over gloo (CPU), torch's NCCL, or CUDA IPC |

vLLM's trainer engines are used as they are (`WeightTransferTrainerFactory`); `BucketTransfer` is
ours because vLLM's engines need vLLM and CUDA, and the transformers engine runs where neither is
(CPU runs, tests, the GPU check's machine). It keeps vLLM's round trip and wire shape: one
`update_weights` per bucket of tensors laid end to end (vLLM's "packed" mode), a plan of
`{"dtype", "numel", "entries": [(name, shape), ...]}` per bucket.

The weights are the plain model's (LoRA merged, vrft.learner.lora), named as the receiver loads them:
`rename` maps transformers' parameter-name prefixes to the checkpoint names vLLM's loaders take
(the orchestrator passes the model family's pairs as plain data; learner never imports rollout).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist

from vrft.learner.lora import Entry
from vrft.learner.weight_sync import (
    _gathered,
    _plan_members,
    iter_buckets,
    make_plan,
    send_buckets,
)
from vrft.wire import join_group, renamer


class WeightSyncClient(Protocol):
    """The rollout side as the learner sees it (vLLM's `VLLMWeightSyncClient`, versions as ints)."""

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None: ...

    def start_weight_update(self) -> None: ...

    def update_weights(self, update_info: dict[str, Any]) -> None: ...

    def finish_weight_update(self, weight_version: int | None = None) -> None: ...


@dataclass(frozen=True)
class ParamMeta:
    """vLLM's `ParamMeta` shape: the name the receiver loads, the wire dtype, the full shape."""
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]


class EntrySource:
    """The learner's weights as vLLM's `WeightSource` contract has them: `metadata()` without
    gathering, and a fresh pass per round yielding `(name, tensor)`; under ZeRO-3 each bucket's
    parameters are gathered together on every rank (every rank must iterate, in lockstep).
    `keep=False` on ranks that only help gather: they yield `(name, None)`."""

    def __init__(self, entries: list[Entry], dtype: torch.dtype, zero3: bool, bucket_mb: float,
                 rename: list[tuple[str, str]] | None = None, keep: bool = True):
        self.entries, self.dtype, self.zero3, self.keep = entries, dtype, zero3, keep
        to_receiver = renamer(rename)
        self.names = [to_receiver(e.name) for e in entries]  # fails here, at init, on an unknown name
        plan = make_plan(entries, dtype, bucket_mb)
        names = iter(self.names)
        self.plan = [{**b, "entries": [(next(names), shape) for _, shape in b["entries"]]} for b in plan]
        self._buffers: dict[torch.dtype, torch.Tensor] = {}  # CPU buckets reuse one buffer per dtype

    def metadata(self) -> list[ParamMeta]:
        return [ParamMeta(n, self.dtype, tuple(e.shape)) for n, e in zip(self.names, self.entries, strict=True)]

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor | None]]:
        names = iter(self.names)
        for members in _plan_members(self.entries, self.plan):
            with _gathered(members, self.zero3), torch.no_grad():
                values = [e.value().to(self.dtype) if self.keep else None for e in members]
                for value in values:
                    yield next(names), value

    def buckets(self) -> Iterator[torch.Tensor | None]:
        """One flat tensor per plan bucket (None where `keep` is off)."""
        return iter_buckets(self.entries, self.plan, self.zero3, self._buffers, keep=self.keep)


class BucketTransfer:
    """vrft's own transfer: flat buckets over a process group (gloo, or torch's NCCL between
    separate GPUs), or by CUDA IPC handle (colocated on one GPU: the engine maps the learner's
    bucket and copies it in). Rank 0 drives the client; other ranks only help gather (ZeRO-3)."""

    def __init__(self, backend: str, rank: int, client: WeightSyncClient, source: EntrySource,
                 device: torch.device, timeout_s: float):
        if backend not in ("gloo", "nccl", "ipc"):
            raise ValueError(f"unknown weight-sync backend {backend!r}; choose gloo, nccl or ipc")
        if backend == "ipc" and device.type != "cuda":
            raise ValueError("weight sync over CUDA IPC needs the learner on a GPU")
        self.backend, self.rank, self.client, self.source = backend, rank, client, source
        self.device, self.timeout_s = device, timeout_s
        self.group: dist.ProcessGroup | None = None

    @classmethod
    def trainer_init(cls, backend: str, rank: int, client: WeightSyncClient, source: EntrySource,
                     device: torch.device, timeout_s: float, endpoint: tuple[str, int] | None = None,
                     world_size: int = 0, listen_fd: int | None = None) -> BucketTransfer:
        """Rendezvous with the engines (rank 0: the client's init runs beside this rank's join,
        both block until the group is whole)."""
        self = cls(backend, rank, client, source, device, timeout_s)
        if rank != 0:
            return self
        if backend == "ipc":
            client.init_weight_transfer_engine({"backend": "ipc"})
            return self
        addr, port = endpoint
        info = {"backend": backend, "master_address": addr, "master_port": port, "world_size": world_size,
                "timeout_s": timeout_s}
        with _beside(client.init_weight_transfer_engine, info) as joined:
            try:
                self.group = join_group(addr, port, 0, world_size, backend, timeout_s, listen_fd=listen_fd)
            except RuntimeError:
                joined.result(timeout=timeout_s)  # an engine's own failure names it
                raise
        joined.result()
        return self

    def send_weights(self, version: int) -> dict[str, float]:
        start = time.perf_counter()
        buckets = self.source.buckets()
        if self.backend == "ipc" and self.rank != 0:
            self._send_ipc(buckets)  # every colocated rank exports its own copy
            return {}
        if self.rank != 0:
            for _ in buckets:  # the gathers are collective
                pass
            return {}
        self.client.start_weight_update()
        if self.backend == "ipc":
            sent = self._send_ipc(buckets)
        else:
            with _beside(self.client.update_weights, {"plan": self.source.plan}) as received:
                try:
                    sent = send_buckets(self.group, buckets, self.device)
                except RuntimeError:
                    # A receiver's own error (it died, or refused the update) names the worker:
                    # prefer it to the group's "connection closed".
                    received.result(timeout=self.timeout_s)
                    raise
            received.result()
        self.client.finish_weight_update(version)
        return {"bytes": float(sent), "buckets": float(len(self.source.plan)),
                "seconds": time.perf_counter() - start}

    def _send_ipc(self, buckets: Iterator[torch.Tensor | None]) -> int:
        """Each bucket as one CUDA IPC handle keyed by this GPU's UUID (the engine on the same GPU
        opens it); the bucket stays alive until the engine has copied it in (`update_weights`
        returns after the copy)."""
        from torch.multiprocessing.reductions import reduce_tensor

        uuid = str(torch.cuda.get_device_properties(self.device).uuid)
        several = dist.is_initialized() and dist.get_world_size() > 1
        sent = 0
        for bucket, flat in zip(self.source.plan, buckets, strict=True):
            flat = flat.to(self.device).contiguous()
            _, args = reduce_tensor(flat)
            torch.cuda.synchronize(self.device)  # written before the engine reads it
            handles = {uuid: args}
            if several:  # colocated ranks: engine i maps rank i's copy, on its own GPU
                gathered: list[dict | None] = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, handles)
                handles = {k: v for h in gathered for k, v in (h or {}).items()}
            if self.rank == 0:
                self.client.update_weights({"bucket": bucket, "ipc_handle": handles})
                sent += flat.numel() * flat.element_size()
            if several:
                dist.barrier()  # every engine has copied this bucket: each rank may drop its copy
            del flat
        torch.cuda.ipc_collect()
        return sent

    def shutdown(self) -> None:
        self.group = None


class VLLMTransfer:
    """vLLM's own trainer engine (NCCL for separate GPUs, CUDA IPC colocated), packed into
    buffers of `bucket_mb`. vLLM's engines finish without a version: the client is told it first."""

    def __init__(self, backend: str, rank: int, client: WeightSyncClient, source: EntrySource,
                 endpoint: tuple[str, int] | None, world_size: int, bucket_mb: float):
        from vllm.distributed.weight_transfer import WeightTransferTrainerFactory

        bucket_bytes = int(bucket_mb * 2**20)
        if backend == "nccl":
            from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

            addr, port = endpoint
            info = NCCLTrainerInitInfo(master_address=addr, master_port=port, world_size=world_size, rank=rank,
                                       packed=True, packed_buffer_size_bytes=bucket_bytes)
        elif backend == "ipc":
            from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo

            info = IPCTrainerInitInfo(rank=rank, packed=True, packed_buffer_size_bytes=bucket_bytes)
        else:
            raise ValueError(f"vLLM's trainer engines are nccl and ipc, not {backend!r}")
        self.rank, self.client, self.source = rank, client, source
        self.engine = WeightTransferTrainerFactory.trainer_init(info, client=client, source=source)

    def send_weights(self, version: int) -> dict[str, float]:
        start = time.perf_counter()
        if self.rank == 0:
            self.client.next_version = version
        self.engine.send_weights()
        meta = self.source.metadata()
        size = sum(torch.Size(m.shape).numel() * torch.finfo(m.dtype).bits // 8 for m in meta)
        return {"bytes": float(size), "buckets": float(len(self.source.plan)),
                "seconds": time.perf_counter() - start} if self.rank == 0 else {}

    def shutdown(self) -> None:
        self.engine.shutdown()


class _beside:
    """Run `fn(arg)` on a thread while the body runs (a rendezvous or a broadcast that both sides
    enter at once); `.result()` re-raises its error. The thread is a daemon: a receiver hung in a
    collective never keeps the process from exiting."""

    def __init__(self, fn, arg):
        self._fn, self._arg = fn, arg
        self._error: BaseException | None = None
        self._done = threading.Event()

    def __enter__(self) -> _beside:
        def run():
            try:
                self._fn(self._arg)
            except BaseException as err:  # noqa: BLE001 - handed to result()
                self._error = err
            finally:
                self._done.set()

        threading.Thread(target=run, daemon=True, name="vrft-transfer").start()
        return self

    def __exit__(self, *exc) -> None:
        return None

    def result(self, timeout: float | None = None) -> None:
        if not self._done.wait(timeout):
            raise TimeoutError(f"the rollout side did not answer within {timeout:g} s")
        if self._error is not None:
            raise self._error
