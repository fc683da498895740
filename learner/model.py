"""Model loading for the learner and per-token log-probs (and entropies) of a VLM on
prompt+completion batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

from vrft.learner.algorithms import entropy_from_logits, token_logprobs_from_logits
from vrft.learner.config import LearnerConfig
from vrft.learner.lora import apply_lora, is_vision_param

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


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a model output (ModelOutput, tuples, lists), depth first."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)


@contextmanager
def vision_tower_in_graph(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Iterator[None]:
    """Within this block, a VLM's forward on a batch without images still runs its vision tower:
    on a dummy image of one merged patch, right after the token embedding (where a batch with
    images runs it), adding 0 × every vision output to the embeddings. The log-probs are unchanged
    (x + 0 = x) and every vision parameter gets a gradient, of exactly 0.

    Why: data-parallel ranks must run the same modules. Under ZeRO-3 each module's forward gathers
    its parameters collectively, and under every ZeRO stage the gradients are reduced in buckets
    whose contents follow which parameters got one: a rank with a text-only micro-batch beside a
    rank with images mismatches the collectives, a hang on NCCL (ms-swift #3213, transformers
    #37186), an abort on gloo (tests/test_vision_dummy.py). Once per block: the shared-prompt path
    embeds again for the completions, after the prompt's forward ran the tower."""
    inner = getattr(model, "module", model)  # a DeepSpeed engine's model (a PeftModel forwards to its own)
    vision = getattr(getattr(inner, "config", None), "vision_config", None)
    if "pixel_values" in batch or vision is None or not hasattr(inner, "get_image_features"):
        yield
        return

    def run_tower(module, args, embeds):
        handle.remove()
        merge = vision.spatial_merge_size  # one merged patch: merge x merge patches of one frame
        width = vision.in_channels * vision.temporal_patch_size * vision.patch_size ** 2
        pixels = embeds.new_zeros(merge * merge, width)
        grid = torch.tensor([[1, merge, merge]], device=embeds.device)
        features = inner.get_image_features(pixels, grid)
        # Exactly the outputs a forward with images consumes (the merged patches; Qwen3-VL's
        # DeepStack features too): under ZeRO-3 each consumed output re-gathers its module's
        # parameters in the backward pass, and the ranks must do that the same number of times.
        used = (getattr(features, "pooler_output", features), getattr(features, "deepstack_features", None))
        zero = sum((t * 0).sum() for t in _tensors(used))
        return embeds + zero.to(embeds.dtype)

    handle = inner.get_input_embeddings().register_forward_hook(run_tower)
    try:
        yield
    finally:
        handle.remove()


def sequence_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor], temperature: float = 1.0,
                      entropy: Literal["none", "value", "grad"] = "none", banned: Sequence[int] | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(input_ids[:, t+1] | ≤ t) for every t: shape [B, L-1], on the shifted-label grid, and
    the entropy of each of those next-token distributions: "value" for logging (no graph kept),
    "grad" for an entropy bonus in the loss. `banned`: token ids the engines never sample, left out
    of the normaliser (`LearnerConfig.banned_token_ids`). A batch without images still runs a VLM's
    vision tower (`vision_tower_in_graph`)."""
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    with vision_tower_in_graph(model, batch):
        logits = model(**inputs, use_cache=False).logits
    # Views, not copies: the helpers reduce in float32 chunk by chunk.
    logp = token_logprobs_from_logits(logits[:, :-1], batch["input_ids"][:, 1:], temperature=temperature,
                                      banned=banned)
    ent = None
    if entropy != "none":
        with torch.set_grad_enabled(entropy == "grad" and torch.is_grad_enabled()):
            ent = entropy_from_logits(logits[:, :-1], temperature=temperature, banned=banned)
    return logp, ent
