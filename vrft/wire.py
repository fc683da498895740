"""What the learner and the rollout engines share for vrft's own weight transports, in one place
below both packages (which import nothing of each other's): the process group both ends join, and
the renaming of the learner's parameter names into the receiver's. The bucket layout itself travels
as plain data (rollout/weight_sync.py describes it). Imports nothing of vrft.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist


def join_group(master_addr: str, port: int, rank: int, world_size: int, backend: str,
               timeout_s: float = 300.0, listen_fd: int | None = None) -> dist.ProcessGroup:
    """A process group outside torch's default one, so it coexists with the learner's DeepSpeed
    group: learner rank 0 (which hosts the store; `listen_fd`: its already bound and listening
    socket, else the store listens everywhere) and every rollout worker. Both ends call this one."""
    timeout = timedelta(seconds=timeout_s)
    extra = {"master_listen_fd": listen_fd} if listen_fd is not None else {}
    store = dist.TCPStore(master_addr, port, world_size, is_master=(rank == 0), timeout=timeout,
                          wait_for_workers=False, **extra)
    if backend == "gloo":
        return dist.ProcessGroupGloo(store, rank, world_size, timeout)
    if backend == "nccl":
        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = timeout
        group = dist.ProcessGroupNCCL(store, rank, world_size, opts)
        # NCCL builds its communicator at the first collective: one now, so a peer that cannot
        # join fails here, within the rendezvous's bound, not at the first weight sync.
        group.broadcast(torch.zeros(1, device="cuda"), 0).wait()
        return group
    raise ValueError(f"unknown weight-sync backend {backend!r}; choose gloo or nccl")


def renamer(pairs: list[tuple[str, str]] | None, family: str = "the model family's") -> Callable[[str], str]:
    """transformers parameter name -> the receiver's name; the first matching prefix of `pairs`
    wins, and a name none matches is refused, not guessed. None: names as they are (the transformers
    engine, text-only models). The learner's sender (learner/transfer.py) and vLLM's workers
    (rollout/vllm_worker_ext.py, through rollout/vllm_inputs.py) both rename with it."""
    if not pairs:
        return lambda name: name

    def rename(name: str) -> str:
        for old, new in pairs:
            if name.startswith(old):
                return new + name[len(old):]
        raise ValueError(f"weight sync: {name!r} matches no known {family} prefix "
                         f"({', '.join(old for old, _ in pairs)})")

    return rename
