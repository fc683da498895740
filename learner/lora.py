"""LoRA through peft, and the *merged* view of a LoRA model under the base model's names.

The rollout engines hold a plain transformers model, so the weight sync (and the exported folder)
must carry `W + scaling * B @ A` under the names of the plain model's `named_parameters()`. The merge
is computed per weight into a new tensor, never in place: peft's `merge_and_unload` would destroy
the adapters the learner keeps training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vrft.learner.checkpoint_layout import checkpoint_transpose

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
    transpose: tuple[int, int] | None = None  # to the checkpoint's layout (learner/checkpoint_layout.py)

    def value(self) -> torch.Tensor:
        if self.scaling is None:
            value = self.sources[0].detach()
        else:
            w, a, b = (p.detach() for p in self.sources)
            delta = b.float() @ a.float()  # the product in fp32 even when the weights are bf16
            value = (w.float() + self.scaling * delta).to(w.dtype)
        return value.transpose(*self.transpose).contiguous() if self.transpose else value


def plain_entries(module: torch.nn.Module, changing_only: bool, checkpoint: bool = False) -> list[Entry]:
    """The plain model's tensors from `module` (plain or peft), in `named_parameters()` order.

    `changing_only`: just those training can change (trainable parameters, LoRA-merged weights)
    and their block partners (`_linear_blocks`); the others equal what the rollout engine loaded
    from the same checkpoint, so the weight sync need not send them. Otherwise every parameter (to
    write a complete model). `checkpoint`: in the layout of the model's checkpoint where
    transformers changed it on load (learner/checkpoint_layout.py): for a folder or a vLLM engine."""
    entries, changing = _entries(module)
    if changing_only:
        keep = _with_block_partners(changing, _linear_blocks(module))
        entries = [e for e in entries if e.name in keep]
    if checkpoint:
        base = module.get_base_model() if is_peft(module) else module
        model_type = getattr(getattr(base, "config", None), "model_type", None)
        for e in entries:
            dims = checkpoint_transpose(model_type, e.name, e.shape)
            if dims:
                e.transpose = dims
                e.shape[dims[0]], e.shape[dims[1]] = e.shape[dims[1]], e.shape[dims[0]]
    return entries


def _entries(module: torch.nn.Module) -> tuple[list[Entry], set[str]]:
    """Every plain tensor of `module`, and the names of those training can change."""
    if not is_peft(module):
        params = list(module.named_parameters())
        return [Entry(n, full_shape(p), [p]) for n, p in params], {n for n, p in params if p.requires_grad}
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
    entries, changing = [], set(merged)
    for n, p in module.named_parameters():
        name = base_name(n)
        if name is None:
            continue
        entries.append(merged.get(name) or Entry(name, full_shape(p), [p]))
        if p.requires_grad:
            changing.add(name)
    return entries, changing


def _linear_blocks(module: torch.nn.Module) -> dict[str, str]:
    """Plain name of every nn.Linear's weight and bias -> its block (the Linear's parent module).

    vLLM loads sibling projections into one fused tensor (q/k/v into `qkv_proj`, gate/up into
    `gate_up_proj`, biases included) and reloads a fused layer from what it receives: a layer sent
    in part keeps an uninitialised rest, and one whose bias is missing is held back, with every
    bucket it references, until the whole reload ends. So the sync sends a block's linears
    together: all of them and their biases if any is sent. Any fusion vLLM does is of siblings, so
    this holds for every family without a table of vLLM's names; the extra cost is the block's
    unfused linears (o_proj, down_proj) when only some of its projections train."""
    blocks = {}
    for mod_name, mod in module.named_modules():
        if isinstance(mod, torch.nn.Linear):
            for pname, _ in mod.named_parameters(recurse=False):
                name = base_name(f"{mod_name}.{pname}")
                if name is not None:  # not a LoRA adapter's own linear
                    blocks[name] = ".".join(name.split(".")[:-2])
    return blocks


def _with_block_partners(names: set[str], blocks: dict[str, str]) -> set[str]:
    touched = {blocks[n] for n in names if n in blocks}
    return names | {n for n, block in blocks.items() if block in touched}


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
