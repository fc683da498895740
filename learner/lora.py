"""LoRA through peft, and the *merged* view of a LoRA model under the base model's names.

The rollout engines hold a plain transformers model, so the weight sync (and the exported folder)
must carry `W + scaling * B @ A` under the names of the plain model's `named_parameters()`. The merge
is computed per weight into a new tensor, never in place: peft's `merge_and_unload` would destroy
the adapters the learner keeps training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

ADAPTER = "default"  # peft's adapter name; we only ever create one
PEFT_PREFIX = "base_model.model."
# The vision tower gets no adapters (EasyR1 does the same): names as Qwen2-VL/2.5-VL, LLaVA, Gemma3.
VISION_MODULES = r".*\b(visual|vision_tower|vision_model|vision_encoder|multi_modal_projector)\b.*"


def is_vision_param(name: str) -> bool:
    parts = name.split(".")
    return any(p in ("visual", "vision_tower", "vision_model", "vision_encoder") for p in parts)


def apply_lora(model: torch.nn.Module, rank: int, alpha: float, dropout: float,
               target_modules: list[str] | None) -> torch.nn.Module:
    """Wrap `model` in a peft LoRA model; only the adapters are trainable afterwards."""
    from peft import LoraConfig, get_peft_model  # peft takes seconds to import: only when asked

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=target_modules or "all-linear", exclude_modules=VISION_MODULES)
    return get_peft_model(model, config)


def is_peft(module: torch.nn.Module) -> bool:
    return hasattr(module, "peft_config") and hasattr(module, "disable_adapter")


def base_name(name: str) -> str | None:
    """The plain model's name of a peft-wrapped parameter; None for an adapter's own weights."""
    if ".lora_" in name:
        return None
    return name.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")


def full_shape(param: torch.nn.Parameter) -> list[int]:
    return list(getattr(param, "ds_shape", param.shape))  # ZeRO-3 keeps the full shape aside


@dataclass
class Entry:
    """One tensor of the plain model, as the learner can produce it. `sources` are the parameters
    to gather (together, under ZeRO-3) to compute it; with `scaling` set they are (W, A, B) and the
    value is `W + scaling * B @ A`, else the single source itself."""
    name: str
    shape: list[int]
    sources: list[torch.nn.Parameter] = field(repr=False)
    scaling: float | None = None

    def value(self) -> torch.Tensor:
        if self.scaling is None:
            return self.sources[0].detach()
        w, a, b = (p.detach() for p in self.sources)
        delta = b.float() @ a.float()  # the product in fp32 even when the weights are bf16
        return (w.float() + self.scaling * delta).to(w.dtype)


def plain_entries(module: torch.nn.Module, changing_only: bool) -> list[Entry]:
    """The plain model's tensors from `module` (plain or peft), in `named_parameters()` order.

    `changing_only`: just those training can change (trainable parameters, LoRA-merged weights);
    the others equal what the rollout engine loaded from the same checkpoint, so the weight sync
    need not send them. Otherwise every parameter (to write a complete model)."""
    if not is_peft(module):
        return [Entry(n, full_shape(p), [p]) for n, p in module.named_parameters()
                if p.requires_grad or not changing_only]
    from peft.tuners.lora import Linear as LoraLinear

    merged: dict[str, Entry] = {}
    for mod_name, mod in module.named_modules():
        if isinstance(mod, LoraLinear) and ADAPTER in mod.lora_A:
            if mod.fan_in_fan_out or mod.use_dora.get(ADAPTER, False):
                raise NotImplementedError(f"{mod_name}: only plain LoRA on nn.Linear can be merged")
            weight = mod.base_layer.weight
            name = base_name(f"{mod_name}.base_layer.weight")
            merged[name] = Entry(name, full_shape(weight), [weight, mod.lora_A[ADAPTER].weight,
                                                            mod.lora_B[ADAPTER].weight],
                                 float(mod.scaling[ADAPTER]))
    entries = []
    for n, p in module.named_parameters():
        name = base_name(n)
        if name is None:
            continue
        if name in merged:
            entries.append(merged[name])
        elif p.requires_grad or not changing_only:
            entries.append(Entry(name, full_shape(p), [p]))
    return entries


def merge_state_dict(state: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """A peft LoRA model's full state dict -> the plain model's, adapters folded into their
    weights (`W + scaling * B @ A`). For checkpoints read offline (export)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        plain = base_name(name)
        if plain is None:
            continue
        if name.endswith(".base_layer.weight"):
            prefix = name.removesuffix(".base_layer.weight")
            a, b = state.get(f"{prefix}.lora_A.{ADAPTER}.weight"), state.get(f"{prefix}.lora_B.{ADAPTER}.weight")
            if a is not None and b is not None:
                tensor = (tensor.float() + scaling * (b.float() @ a.float())).to(tensor.dtype)
        out[plain] = tensor
    return out
