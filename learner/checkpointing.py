"""What a learner checkpoint holds beyond DeepSpeed's own files, and reading one back offline.

    <dir>/<tag>/...                 DeepSpeed: module, optimizer, LR scheduler (all ranks' shards)
    <dir>/<tag>/rng_rank<r>.json    each rank's Python / NumPy / torch RNG states (dropout, …)
    <dir>/vrft_learner.json         how to rebuild the model: base path, tag, ZeRO stage, LoRA

`consolidated_state_dict` rebuilds the full fp32 weights from any ZeRO stage and world size without
starting DeepSpeed or Ray (for `vrft export`).

Nothing here unpickles arbitrary objects: a checkpoint folder may come from anyone, and a pickle
runs code as it loads. Our own state is JSON; DeepSpeed's `.pt` files are read only inside
`weights_only_loads()` (tensors, containers and the few DeepSpeed classes listed there).
"""

from __future__ import annotations

import json
import logging
import pickle
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

META = "vrft_learner.json"
log = logging.getLogger("vrft")


class UnsafeCheckpointError(ValueError):
    """A checkpoint file holds something other than tensors and plain data (refused, not run)."""


def rng_state() -> dict:
    """Every RNG stream as JSON-able plain data."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def save_rng(path: Path) -> None:
    Path(path).write_text(json.dumps(rng_state()))


def load_rng(path: Path) -> bool:
    """Restore the RNG states saved at `path` (JSON); False if there is no such file."""
    path = Path(path)
    if not path.is_file():
        if path.with_suffix(".pt").is_file():  # written by vrft before RNG state became JSON
            log.warning("%s: a pickled RNG file, not loaded (unsafe); the RNG keeps its seed",
                        path.with_suffix(".pt"))
        return False
    set_rng_state(json.loads(path.read_text()))
    return True


def _deepspeed_safe_globals() -> list:
    """The classes DeepSpeed 0.19 pickles into its own checkpoint files (found with
    torch.serialization.get_unsafe_globals_in_checkpoint on ZeRO 0-3, fp32/bf16, LoRA): plain
    records rebuilt from their fields, no code runs."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextmanager
def weights_only_loads():
    """Every `torch.load` inside runs with weights_only=True and only DeepSpeed's listed classes
    allowed, whatever the caller asked: DeepSpeed's readers (TorchCheckpointEngine.load,
    utils/zero_to_fp32.py) pass weights_only=False. Anything else in a file raises
    `UnsafeCheckpointError` before it is built. Not thread-safe (it swaps torch.load)."""
    original = torch.load

    def load(f, *args, weights_only=None, **kwargs):
        try:
            return original(f, *args, weights_only=True, **kwargs)
        except pickle.UnpicklingError as err:
            # torch's message is a paragraph; the line that names the offending global is enough.
            lines = [ln for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
            why = (lines or ["not tensors and plain data"])[0].strip()[:200]
            raise UnsafeCheckpointError(f"refusing to load {f}: {why}") from None

    with torch.serialization.safe_globals(_deepspeed_safe_globals()):
        torch.load = load
        try:
            yield
        finally:
            torch.load = original


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
    with weights_only_loads():
        if meta["zero_stage"] == 0:
            state = torch.load(directory / tag / "mp_rank_00_model_states.pt", map_location="cpu")
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
