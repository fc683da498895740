"""The learner's weight source against vLLM 0.32's own trainer engines' expectations. vLLM's NCCL
and CUDA-IPC trainer engines need CUDA, so on CPU they cannot send; what they require of the source
(learner/transfer.py `EntrySource`) is checked here with vLLM's own code: its NCCL engine's check
that `metadata()` and iteration agree name by name, dtype and shape, and its update-info types."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM
from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo, IPCWeightTransferUpdateInfo
from vllm.distributed.weight_transfer.nccl_engine import (
    NCCLTrainerInitInfo,
    NCCLTrainerWeightTransferEngine,
    NCCLWeightTransferUpdateInfo,
)

from vrft.learner.lora import plain_entries
from vrft.learner.transfer import EntrySource


def test_entry_source_passes_vllms_own_stream_check(tiny_text_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_text_model)
    source = EntrySource(plain_entries(model, changing_only=True), torch.bfloat16, zero3=False, bucket_mb=0.01)
    meta = source.metadata()
    assert len(source.plan) > 1  # several buckets: the per-bucket walk is exercised
    # vLLM's NCCL trainer engine runs exactly this over the source before broadcasting: any
    # disagreement between the two channels raises, naming the first divergent parameter.
    sent = list(NCCLTrainerWeightTransferEngine._checked_iter(source, meta))
    params = dict(model.named_parameters())
    assert [n for n, _ in sent] == list(params) and len(sent) == len(meta)
    for name, tensor in sent:
        assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, params[name].detach().to(torch.bfloat16))
    assert [n for n, _ in source] == [m.name for m in meta]  # each pass is fresh
    # The update info vLLM builds from the metadata validates.
    NCCLWeightTransferUpdateInfo(names=[m.name for m in meta], dtype_names=[str(m.dtype).split(".")[-1] for m in meta],
                                 shapes=[list(m.shape) for m in meta])


def test_trainer_init_infos_take_what_vrft_passes(monkeypatch):
    """learner/transfer.py `VLLMTransfer` builds these; a renamed field in vLLM fails here first."""
    nccl = NCCLTrainerInitInfo(master_address="127.0.0.1", master_port=1, world_size=3, rank=0, packed=True,
                               packed_buffer_size_bytes=2**20)
    assert nccl.backend == "nccl" and nccl.is_sender
    ipc = IPCTrainerInitInfo(rank=1, packed=True, packed_buffer_size_bytes=2**20)
    assert ipc.backend == "ipc" and not ipc.is_sender
    # The IPC update info that rollout/vllm_engine.py forwards (handles pickled, as vLLM's HTTP route).
    import base64
    import pickle

    monkeypatch.setenv("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # set by the engine when ipc
    handles = {"GPU-uuid": (1, 2, 3)}
    info = IPCWeightTransferUpdateInfo(names=["w"], dtype_names=["bfloat16"], shapes=[[2]], tensor_sizes=[4],
                                       ipc_handles_pickled=base64.b64encode(pickle.dumps(handles)).decode())
    assert info.ipc_handles == handles
