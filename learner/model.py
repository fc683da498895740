"""Model loading for the learner and per-token log-probs of a VLM on prompt+completion batches."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

from learner.algorithms import token_logprobs_from_logits

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")


def resolve_dtype(name: str) -> torch.dtype:
    """'auto' is bf16 on GPU and fp32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return _DTYPES[name]


def load_model(path: str, dtype: str = "auto", trust_remote_code: bool = False,
               gradient_checkpointing: bool = False, freeze_vision: bool = False) -> torch.nn.Module:
    """Loads a local folder or a Hugging Face id; a config with a vision part loads as a VLM."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    cls = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    model = cls.from_pretrained(path, dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if freeze_vision:
        for name, param in model.named_parameters():
            if ".visual." in f".{name}" or name.startswith("visual."):
                param.requires_grad_(False)
    return model


def sequence_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor], temperature: float = 1.0,
                      ) -> torch.Tensor:
    """log p(input_ids[:, t+1] | ≤ t) for every t: shape [B, L-1], on the shifted-label grid."""
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    logits = model(**inputs, use_cache=False).logits
    # A view, not a copy: the helper reduces in float32 chunk by chunk.
    return token_logprobs_from_logits(logits[:, :-1], batch["input_ids"][:, 1:], temperature=temperature)
