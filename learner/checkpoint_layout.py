"""Tensors laid out as a model's published checkpoint stores them, where transformers changes the
layout as it loads.

transformers 5 reads some checkpoints through its conversion mapping (`conversion_mapping.py`, the
same in 5.19 and 5.23). For `qwen3_vl_moe` it transposes the fused expert tensors
`mlp.experts.gate_up_proj` and `mlp.experts.down_proj` (dims 1 and 2) on load, and only when the
file's shape differs from the module's (`Transpose(1, 2, check_dims=True)`). So `named_parameters()`
holds them as [experts, 2 x intermediate, hidden] and [experts, hidden, intermediate], while the
published checkpoints hold [experts, hidden, 2 x intermediate] and [experts, intermediate, hidden],
and vLLM's loader expects that too: it transposes fused expert tensors of this model again
(`is_fused_checkpoint_transposed=True`, with no shape check). A model folder the learner writes
(`LearnerRank.save_hf`, `vrft export`) and the weights it sends a vLLM engine must therefore be in
the checkpoint's layout; transformers reads such a folder back to the same parameters.

transformers' own `save_pretrained` writes the in-memory layout (its reverse transpose checks the
shape against the module's, which always matches); such a folder reloads into transformers but not
into vLLM. The learner never loads or sends through it.
"""

from __future__ import annotations

import torch

# model_type -> names (suffixes) of the parameters transformers transposes (dims 1 and 2) on load.
TRANSPOSED_ON_LOAD: dict[str, tuple[str, ...]] = {
    "qwen3_vl_moe": ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
}


def checkpoint_transpose(model_type: str | None, name: str, shape) -> tuple[int, int] | None:
    """The two dims to swap to turn parameter `name` of a `model_type` model from transformers'
    in-memory layout into its checkpoint's layout; None where the two agree.

    Square dims are left as they are, as transformers' loader leaves them (it transposes only when
    the shapes differ): in both cases what is written is the tensor transformers read."""
    suffixes = TRANSPOSED_ON_LOAD.get(model_type or "")
    if not suffixes or not name.endswith(suffixes) or len(shape) != 3 or shape[1] == shape[2]:
        return None
    return (1, 2)


def to_checkpoint_layout(model_type: str | None, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with transformers' names and layout, in its checkpoint's layout (for export)."""
    out = {}
    for name, tensor in state.items():
        dims = checkpoint_transpose(model_type, name, tensor.shape)
        out[name] = tensor.transpose(*dims).contiguous() if dims else tensor
    return out
