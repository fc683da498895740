"""What a learner checkpoint holds beyond DeepSpeed's own files, and reading one back offline.

    <dir>/<tag>/...                 DeepSpeed: module, optimizer, LR scheduler (all ranks' shards)
    <dir>/<tag>/rng_rank<r>.pt      each rank's Python / NumPy / torch RNG states (dropout, …)
    <dir>/vrft_learner.json         how to rebuild the model: base path, tag, ZeRO stage, LoRA

`consolidated_state_dict` rebuilds the full fp32 weights from any ZeRO stage and world size without
starting DeepSpeed or Ray (for `vrft export`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

META = "vrft_learner.json"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_rng(path: Path) -> None:
    torch.save(rng_state(), path)


def load_rng(path: Path) -> bool:
    """Restore the RNG states saved at `path`; False if there is no such file."""
    if not path.is_file():
        return False
    # Our own file (NumPy's state is a tuple with an array): not loadable with weights_only.
    set_rng_state(torch.load(path, weights_only=False))
    return True


def write_meta(directory: Path, meta: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META).write_text(json.dumps(meta, indent=1))


def read_meta(directory: Path) -> dict:
    path = directory / META
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a vrft learner checkpoint (no {META})")
    return json.loads(path.read_text())


def consolidated_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """The full fp32 module state dict of a learner checkpoint (peft names if it used LoRA), as
    detached tensors."""
    meta = read_meta(directory)
    tag = meta["tag"]
    if meta["zero_stage"] == 0:
        state = torch.load(directory / tag / "mp_rank_00_model_states.pt", map_location="cpu",
                           weights_only=False)
        state = state["module"]
    else:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        # Merges the ranks' fp32 partitions (trainable) and the frozen parameters, any world size.
        state = get_fp32_state_dict_from_zero_checkpoint(str(directory), tag=tag)
    # Plain tensors: the optimizer's fp32 partitions are saved as parameters that require grad.
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()) for k, v in state.items()}


def write_hf_folder(directory: Path, state: dict[str, torch.Tensor], config, generation_config=None,
                    max_shard_size: str = "5GB") -> None:
    """A Hugging Face model folder: config.json (+ generation_config.json) and safetensors shards
    (with an index when there are several), loadable by `from_pretrained`."""
    from huggingface_hub import save_torch_state_dict

    directory.mkdir(parents=True, exist_ok=True)
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        config.dtype = next(iter(dtypes))
    config.save_pretrained(directory)
    if generation_config is not None:
        generation_config.save_pretrained(directory)
    save_torch_state_dict({k: _own_storage(v) for k, v in state.items()}, directory,
                          max_shard_size=max_shard_size)


def _own_storage(tensor: torch.Tensor) -> torch.Tensor:
    """safetensors refuses views that cover part of a storage (ZeRO's fp32 state comes back as
    slices of one flat buffer): copy those, one at a time."""
    tensor = tensor.detach().contiguous()
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        tensor = tensor.clone()
    return tensor
