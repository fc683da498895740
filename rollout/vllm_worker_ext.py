"""The receiving end of weight sync inside vLLM's worker processes (`worker_extension_cls`).

vLLM runs the model in its own process(es) (the engine core, plus one worker per tensor-parallel
rank), so the actor that hosts the engine cannot receive weights into it. vLLM mixes this class into
its Worker class; `LLM.collective_rpc("vrft_...")` calls the methods on every worker. Each worker
joins the learner's side group as its own rank (world = 1 learner + all engines' TP ranks), receives
every flat bucket (one broadcast per bucket, the same wire format as rollout/weight_sync.py) and
streams the tensors, renamed for vLLM, into `reload_weights`, vLLM's in-place reload that also redoes
the post-load processing (the CPU backend repacks weights, quantised layers re-quantise), which a
plain `model.load_weights` after start skips. With TP > 1 every rank receives full tensors and
vLLM's weight loaders keep their shard.

Method names carry a `vrft_` prefix: vLLM refuses an extension whose names clash with the Worker's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch

from rollout.vllm_inputs import weight_name_mapper
from rollout.weight_sync import join_group, unpack_bucket


class WeightSyncExtension:
    """Mixed into vLLM's Worker: `self` is the worker (it has `device`, `rank`, `model_runner`)."""

    def vrft_join_weight_sync(self, master_addr: str, port: int, first_rank: int, world_size: int,
                              backend: str, timeout_s: float = 300.0) -> int:
        """Join the learner's group as rank `first_rank + this worker's TP rank`; blocks until all join.
        A re-formed group (after a rollout worker was replaced) replaces the old one."""
        rank = first_rank + int(self.rank)
        self._vrft_group = None
        self._vrft_group = join_group(master_addr, port, rank, world_size, backend, timeout_s)
        hf_config = self.model_config.hf_config
        self._vrft_rename = weight_name_mapper(hf_config.model_type, hasattr(hf_config, "vision_config"))
        return rank

    def vrft_receive_weights(self, plan: list[dict[str, Any]]) -> dict[str, float]:
        """Receive every bucket of `plan` and load it in place; returns bytes and seconds."""
        group = getattr(self, "_vrft_group", None)
        if group is None:
            raise RuntimeError("weight sync: vrft_receive_weights before vrft_join_weight_sync")
        received = {"bytes": 0}
        start = time.perf_counter()

        def stream() -> Iterator[tuple[str, torch.Tensor]]:
            # A generator: each bucket is received only when the loader asks for the next
            # tensor, so at most one bucket is in flight beside the model.
            for bucket in plan:
                flat = torch.empty(bucket["numel"], dtype=getattr(torch, bucket["dtype"]), device=self.device)
                group.broadcast(flat, 0).wait()
                received["bytes"] += flat.numel() * flat.element_size()
                for name, tensor in unpack_bucket(flat, [(n, list(s)) for n, s in bucket["entries"]]).items():
                    yield self._vrft_rename(name), tensor

        self._vrft_load(stream())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return {"bytes": float(received["bytes"]), "seconds": time.perf_counter() - start}

    def _vrft_load(self, weights: Iterator[tuple[str, torch.Tensor]]) -> None:
        runner = self.model_runner
        try:
            if hasattr(runner, "reload_weights"):  # recent vLLM: in place, with post-load processing
                self.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
            else:  # older vLLM: the model's own loader
                runner.model.load_weights(weights)
        finally:
            # Drain the stream even when loading failed: buckets left unreceived would hang the
            # learner's broadcast, and the error would never reach anyone.
            for _ in weights:
                pass

    def vrft_load_serialized(self, entries: list[tuple[str, str, list[int], bytes]]) -> int:
        """Load tensors shipped as (name, dtype, shape, raw bytes) through vLLM's RPC (which carries
        bytes, not tensors): the small-model path of `VLLMEngine.update_weights`."""
        rename = weight_name_mapper(self.model_config.hf_config.model_type,
                                    hasattr(self.model_config.hf_config, "vision_config"))

        def tensors() -> Iterator[tuple[str, torch.Tensor]]:
            for name, dtype, shape, data in entries:
                flat = torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype))
                yield rename(name), flat.view(shape).to(self.device)

        self._vrft_load(tensors())
        return len(entries)

    def vrft_param_checksum(self) -> float:
        """Sum of all parameters (float64): a cheap fingerprint to see that weights changed."""
        model = self.model_runner.model
        return float(sum(p.detach().double().sum() for p in model.parameters()))
