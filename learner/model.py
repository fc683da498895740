"""Model loading for the learner and per-token log-probs (and entropies) of a VLM on
prompt+completion batches."""

from __future__ import annotations

from typing import Literal

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

from learner.algorithms import entropy_from_logits, token_logprobs_from_logits
from learner.config import LearnerConfig
from learner.lora import apply_lora, is_vision_param

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")


def resolve_dtype(name: str) -> torch.dtype:
    """'auto' is bf16 on GPU and fp32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return _DTYPES[name]


def model_class(path: str, trust_remote_code: bool = False):
    """A config with a vision part loads as a VLM (ImageTextToText), otherwise as a causal LM."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    return AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM


def load_model(path: str, dtype: str = "auto", trust_remote_code: bool = False,
               gradient_checkpointing: bool = False, freeze_vision: bool = False) -> torch.nn.Module:
    """Loads a local folder or a Hugging Face id."""
    cls = model_class(path, trust_remote_code)
    model = cls.from_pretrained(path, dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code)
    if gradient_checkpointing:
        # Non-reentrant checkpointing: inputs need not require grad, so it also works when the
        # embeddings are frozen (LoRA).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if freeze_vision:
        for name, param in model.named_parameters():
            if is_vision_param(name):
                param.requires_grad_(False)
    return model


def load_policy(path: str, cfg: LearnerConfig, trust_remote_code: bool = False) -> torch.nn.Module:
    """The trainable policy in fp32 (DeepSpeed keeps the fp32 master copy itself under bf16),
    with LoRA adapters if `cfg.lora_rank` > 0."""
    model = load_model(path, "float32", trust_remote_code, cfg.gradient_checkpointing, cfg.freeze_vision)
    if cfg.lora_rank:
        model = apply_lora(model, cfg.lora_rank, cfg.lora_alpha or 2.0 * cfg.lora_rank, cfg.lora_dropout,
                           cfg.lora_target_modules)
    return model


def sequence_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor], temperature: float = 1.0,
                      entropy: Literal["none", "value", "grad"] = "none",
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(input_ids[:, t+1] | ≤ t) for every t: shape [B, L-1], on the shifted-label grid, and
    the entropy of each of those next-token distributions: "value" for logging (no graph kept),
    "grad" for an entropy bonus in the loss."""
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    logits = model(**inputs, use_cache=False).logits
    # Views, not copies: the helpers reduce in float32 chunk by chunk.
    logp = token_logprobs_from_logits(logits[:, :-1], batch["input_ids"][:, 1:], temperature=temperature)
    ent = None
    if entropy != "none":
        with torch.set_grad_enabled(entropy == "grad" and torch.is_grad_enabled()):
            ent = entropy_from_logits(logits[:, :-1], temperature=temperature)
    return logp, ent
