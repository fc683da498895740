"""`vrft export CHECKPOINT OUT`: a run checkpoint -> a Hugging Face folder transformers loads.

The learner's DeepSpeed files are read offline (any ZeRO stage, any world size; no Ray, no GPU),
LoRA adapters are folded into their weights, and the result is written as safetensors under the
plain model's parameter names, next to the base model's config and tokenizer/processor files:

    AutoModelForImageTextToText.from_pretrained(OUT)      # or AutoModelForCausalLM for text models

A checkpoint folder is untrusted input: its files are read weights-only (no pickle runs), and
`trust_remote_code` comes from the caller (`vrft export --trust-remote-code`), never from the
checkpoint's JSON. OUT is replaced only if it is an earlier export (it holds `vrft_export.json`)
or an empty folder: a mistyped OUT never deletes someone's files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

# torch, transformers and DeepSpeed are imported inside the functions: `vrft export` on a wrong
# path must fail in a second, not after ten seconds of imports.

# What a model folder holds besides the weights is copied as is (tokenizer, processor, template).
_WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ckpt", "*.index.json")


MARKER = "vrft_export.json"


def _replaceable(path: Path) -> bool:
    """Absent, an empty folder, or a folder an earlier export wrote."""
    if not path.exists() and not path.is_symlink():
        return True
    return path.is_dir() and not path.is_symlink() and ((path / MARKER).is_file() or not any(path.iterdir()))


def learner_dir(checkpoint: Path) -> Path:
    """A run checkpoint (`.../checkpoints/step_000100`) or its `learner` folder itself."""
    return checkpoint / "learner" if (checkpoint / "learner").is_dir() else checkpoint


def _model_files(model_path: str) -> Path:
    local = Path(model_path).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download  # a hub id: its small files, from the cache if offline

    return Path(snapshot_download(model_path, ignore_patterns=list(_WEIGHTS)))


def _check_names(state: dict, model_path: str, config, trust_remote_code: bool) -> None:
    """The names must be exactly the plain model's, or from_pretrained would drop or re-init weights."""
    import torch

    from vrft.learner.model import model_class

    cls = model_class(model_path, trust_remote_code)
    with torch.device("meta"):  # names only: no memory, no initialisation
        model = cls.from_config(config, trust_remote_code=trust_remote_code)
    params = {n for n, _ in model.named_parameters()}  # tied weights appear once
    allowed = set(model.state_dict())
    missing, unexpected = sorted(params - set(state)), sorted(set(state) - allowed)
    if missing or unexpected:
        raise ValueError(f"export: checkpoint does not match {type(model).__name__}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")


def export_checkpoint(checkpoint: str | Path, out: str | Path, dtype: str = "auto",
                      trust_remote_code: bool = False) -> Path:
    """Write the checkpoint's policy to `out`; `dtype` "auto" keeps the base model's dtype."""
    import torch
    from transformers import AutoConfig, GenerationConfig

    from vrft.learner.checkpoint_layout import to_checkpoint_layout
    from vrft.learner.checkpointing import consolidated_state_dict, read_meta, write_hf_folder
    from vrft.learner.lora import merge_state_dict

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    source, out = learner_dir(Path(checkpoint)), Path(out)
    tmp = out.with_name(out.name + ".tmp")
    for path in (out, tmp):
        if not _replaceable(path):
            raise ValueError(f"{path} exists and is not an earlier vrft export (no {MARKER}); "
                             "choose another OUT or remove it yourself")
    meta = read_meta(source)
    # The checkpoint's own trust_remote_code is ignored: a model that ships code fails to load
    # below with transformers' message asking for it, and the user decides.
    trust = trust_remote_code
    state = consolidated_state_dict(source)
    if meta.get("lora"):
        state = merge_state_dict(state, float(meta["lora"]["scaling"]))
    config = AutoConfig.from_pretrained(meta["model_path"], trust_remote_code=trust)
    _check_names(state, meta["model_path"], config, trust)
    state = to_checkpoint_layout(getattr(config, "model_type", None), state)  # as the checkpoint lays them out
    target = dtypes.get(dtype) or getattr(config, "dtype", None) or torch.float32
    if isinstance(target, str):
        target = dtypes.get(target, torch.float32)
    state = {k: v.to(target) if v.is_floating_point() else v for k, v in state.items()}
    files = _model_files(meta["model_path"])
    # Written beside OUT and renamed into place: a failure never leaves a folder that would load.
    # The marker goes in first, so a crashed export's leftover is recognisably ours.
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / MARKER).write_text(json.dumps({"checkpoint": str(Path(checkpoint).resolve()), "dtype": dtype,
                                          "time": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    for item in files.iterdir():
        if item.is_file() and item.name != MARKER and not any(item.match(p) for p in _WEIGHTS):
            shutil.copy2(item, tmp / item.name)
    try:
        generation = GenerationConfig.from_pretrained(files)
    except OSError:
        generation = None
    write_hf_folder(tmp, state, config, generation)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out

