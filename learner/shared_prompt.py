"""Per-token log-probs with each prompt computed once for the G completions that share it.

A GRPO batch holds G completions of every prompt: the plain forward (learner/model.py
`sequence_logprobs`) runs the vision tower on the same image G times and the decoder on the same
prompt tokens G times, in the policy's forward and backward and in the reference's forward. Here
each distinct prompt (same tokens, same images) goes through the model once, with its KV cache kept
(in the autograd graph: the prompt still gets every completion's gradient); the cache is repeated G
times and the completions run on top of it. Only completion positions get logits (the prompt's
last one predicts the first completion token). The result has the plain path's shape, [B, L-1] on
the shifted-label grid (zeros on the prompt's positions), so the losses do not know the difference.

For a Visual-RFT batch (~1,000 image tokens per prompt, ~200 completion tokens, G=8) this is most
of the learner's work; the equality with the plain path is checked on every model family in
tests/test_shared_prompt.py and, once per learner, on the first real batch (`agrees`), which turns
sharing off with a warning if they differ.

Rotary positions: the completion continues the prompt's positions. Qwen-VL's M-RoPE stores the
prompt's offset (`rope_deltas`) on the model during the prompt's forward; a prompt without images
and a text-only model continue at the prompt's length. A multi-turn completion with tool
observations holds images of its own: its continuation gets those images and the positions the model
computes over the whole row (an image moves every position after it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from vrft.learner.algorithms import entropy_from_logits, token_logprobs_from_logits
from vrft.learner.model import vision_tower_in_graph

PROMPT_INPUTS = ("input_ids", "attention_mask", "mm_token_type_ids")


def prompt_groups(batch: dict[str, torch.Tensor]) -> dict[int, list[int]]:
    """First row of each distinct prompt -> the rows that share it (collate's `prefix_of`)."""
    groups: dict[int, list[int]] = {}
    for row, first in enumerate(batch["prefix_of"].tolist()):
        groups.setdefault(first, []).append(row)
    return groups


def worth_sharing(batch: dict[str, torch.Tensor]) -> bool:
    return "prefix_of" in batch and len(prompt_groups(batch)) < batch["input_ids"].shape[0]


def _rope_owner(model: torch.nn.Module) -> torch.nn.Module | None:
    """The submodule that keeps Qwen-VL's `rope_deltas` (None for models without M-RoPE)."""
    return next((m for m in model.modules() if hasattr(m, "rope_deltas")), None)


def _offsets(counts: list[int]) -> list[int]:
    out = [0]
    for c in counts:
        out.append(out[-1] + c)
    return out


def _prompt_inputs(batch: dict[str, torch.Tensor], row: int, length: int, pix: list[int],
                   grid: list[int]) -> dict[str, torch.Tensor]:
    """Row `row`'s prompt, with its own images: its first `prompt_pixel_counts[row]` patch rows from
    `pix[row]` (all of the row's when no completion holds images) and its grids likewise."""
    inputs = {k: batch[k][row:row + 1, :length] for k in PROMPT_INPUTS if k in batch}
    if "pixel_values" in batch:
        p_end, g_end = _prompt_image_ends(batch, row, pix, grid)
        if g_end > grid[row]:
            inputs["pixel_values"] = batch["pixel_values"][pix[row]:p_end]
            inputs["image_grid_thw"] = batch["image_grid_thw"][grid[row]:g_end]
    return inputs


def _prompt_image_ends(batch: dict[str, torch.Tensor], row: int, pix: list[int], grid: list[int]) -> tuple[int, int]:
    """Where row `row`'s prompt images end in the flat patches and grids (its observations' follow)."""
    if "prompt_pixel_counts" not in batch:
        return pix[row + 1], grid[row + 1]
    return pix[row] + int(batch["prompt_pixel_counts"][row]), grid[row] + int(batch["prompt_grid_counts"][row])


def _generation_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside any wrapper (DeepSpeed's engine, PEFT): the one that computes
    generate()'s positions, M-RoPE included."""
    return next(m for m in model.modules() if hasattr(type(m), "_prepare_position_ids_for_generation"))


def _observation_inputs(model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: list[int], p: int, steps: int,
                        pix: list[int], grid: list[int]) -> dict[str, torch.Tensor]:
    """For a group whose completions hold observation images (multi-turn tool rollouts): those images
    (each row's, in row order), the completions' image marks, and every row's M-RoPE positions from
    p to p + steps, computed by the model over the whole row (an image in the completion moves the
    positions after it, so they are no plain continuation of the prompt's)."""
    ids, mm = batch["input_ids"], batch["mm_token_type_ids"]
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    positions, pixels, grids = [], [], []
    for row in rows:
        p_end, g_end = _prompt_image_ends(batch, row, pix, grid)
        pixels.append(batch["pixel_values"][p_end:pix[row + 1]])
        grids.append(batch["image_grid_thw"][g_end:grid[row + 1]])
        n = lengths[row]
        kwargs = {"attention_mask": batch["attention_mask"][row:row + 1, :n],
                  "mm_token_type_ids": mm[row:row + 1, :n], "image_grid_thw": batch["image_grid_thw"][grid[row]:grid[row + 1]]}
        full = _generation_model(model)._prepare_position_ids_for_generation(ids[row:row + 1, :n], kwargs)
        full = full[..., p:p + steps]
        if full.shape[-1] < steps:  # a shorter row of the group: its padding continues one by one
            tail = full[..., -1:] + torch.arange(1, steps - full.shape[-1] + 1, device=full.device)
            full = torch.cat([full, tail], dim=-1)
        positions.append(full)
    owner = _rope_owner(model)
    if owner is not None:
        owner.rope_deltas = None  # set by the calls above; the positions are passed explicitly
    out = {"position_ids": torch.cat(positions, dim=-2), "mm_token_type_ids": mm[rows, p:p + steps]}
    if sum(len(g) for g in grids):
        out["pixel_values"] = torch.cat(pixels)
        out["image_grid_thw"] = torch.cat(grids)
    return out


def _continuation_positions(owner: torch.nn.Module | None, prompt_len: int, steps: int, rows: int,
                            had_images: bool, device: torch.device) -> torch.Tensor:
    """`owner`: the model's `_rope_owner`, read after the prompt's forward."""
    positions = torch.arange(prompt_len, prompt_len + steps, device=device)
    if owner is None:  # a text-only model: 1-D positions
        return positions.view(1, -1).expand(rows, -1)
    delta = owner.rope_deltas.reshape(-1)[0].to(device) if had_images and owner.rope_deltas is not None else 0
    return (positions + delta).view(1, 1, -1).expand(3, rows, -1)


def shared_prompt_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor], temperature: float = 1.0,
                           entropy: Literal["none", "value", "grad"] = "none", banned: Sequence[int] | None = None,
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`sequence_logprobs` with each distinct prompt run once (see the module's docstring)."""
    with vision_tower_in_graph(model, batch):  # a batch without images: once, in the first prompt's forward
        return _shared_prompt_logprobs(model, batch, temperature, entropy, banned)


def _shared_prompt_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor], temperature: float,
                            entropy: Literal["none", "value", "grad"], banned: Sequence[int] | None,
                            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    ids, mask = batch["input_ids"], batch["attention_mask"]
    n, width = ids.shape
    prompt_lens = batch["prompt_lens"].tolist()
    lengths = mask.sum(dim=1).tolist()
    logp_rows: list[torch.Tensor | None] = [None] * n
    ent_rows: list[torch.Tensor | None] = [None] * n
    owner = _rope_owner(model)
    has_pixels = "pixel_values" in batch
    pix = _offsets(batch["pixel_counts"].tolist()) if has_pixels else []
    grid = _offsets(batch["grid_counts"].tolist()) if has_pixels else []
    for first, rows in prompt_groups(batch).items():
        p = prompt_lens[first]
        span = max(lengths[r] - p for r in rows)  # the longest completion of the group
        prompt = _prompt_inputs(batch, first, p, pix, grid)
        out = model(**prompt, use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1:].expand(len(rows), 1, -1)  # predicts every row's first token
        index = torch.tensor(rows, device=ids.device)
        completions = ids[index, p:p + span]
        if span > 1:
            cache = out.past_key_values
            cache.batch_repeat_interleave(len(rows))
            steps = span - 1  # the last token's logits predict nothing we score
            attention = torch.cat([mask[index, :p], mask[index, p:p + steps]], dim=1)
            if "images_in_completion" in batch and bool(batch["images_in_completion"][index].any()):
                extra = _observation_inputs(model, batch, rows, p, steps, pix, grid)
            else:
                extra = {"position_ids": _continuation_positions(owner, p, steps, len(rows), "pixel_values" in prompt,
                                                                 ids.device)}
            rest = model(input_ids=completions[:, :steps], attention_mask=attention, past_key_values=cache,
                         use_cache=True, **extra).logits
            logits = torch.cat([logits, rest], dim=1)
        logits = logits[:, :span]  # none at all for a group of empty completions
        logp = token_logprobs_from_logits(logits, completions, temperature=temperature, banned=banned)
        ent = None
        if entropy != "none":
            with torch.set_grad_enabled(entropy == "grad" and torch.is_grad_enabled()):
                ent = entropy_from_logits(logits, temperature=temperature, banned=banned)
        # Back onto the plain path's grid: row r's completion token t sits at p - 1 + t.
        before, after = p - 1, width - 1 - (p - 1) - span
        for i, row in enumerate(rows):
            logp_rows[row] = torch.cat([logp.new_zeros(before), logp[i], logp.new_zeros(after)])
            if ent is not None:
                ent_rows[row] = torch.cat([ent.new_zeros(before), ent[i], ent.new_zeros(after)])
    return torch.stack(logp_rows), (torch.stack(ent_rows) if entropy != "none" else None)


def agrees(shared: torch.Tensor, plain: torch.Tensor, loss_mask: torch.Tensor, dtype: torch.dtype) -> float:
    """The largest difference between the two paths' log-probs on completion tokens, when it is
    within float noise of `dtype`; raises ValueError naming it otherwise."""
    diff = float(((shared.float() - plain.float()).abs() * loss_mask).max()) if loss_mask.any() else 0.0
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    if not diff <= tolerance:
        raise ValueError(f"shared-prompt log-probs differ from the plain forward's by {diff:.3g} "
                         f"(tolerance {tolerance:g} for {dtype})")
    return diff
