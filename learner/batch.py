"""What the learner trains on, and how a batch is cut into micro-batches and padded tensors.

A `Sample` is one prompt + one completion. Prompt tensors (pixel values, grid) may be shared by the
G samples of a group: Ray's serialisation keeps one copy of an object referenced several times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vrft.learner.algorithms import truncation_mask


@dataclass
class Sample:
    prompt_ids: list[int]
    completion_ids: list[int]
    advantage: float = 0.0  # filled in by LearnerGroup.train_step from `reward` and `group_id`
    group_id: int = 0
    rollout_logprobs: list[float] | None = None  # the engine's, for the IS correction
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    prompt_mm_token_type_ids: list[int] | None = None
    weight: float = 1.0  # 0 for the padding micro-batches that keep ranks in lock-step
    finish_reason: str = "stop"  # "length": cut by max_new_tokens (masked if mask_truncated)
    reward: float | None = None  # the total (shaped) reward; GRPO's advantages are computed from it
    # A multi-turn completion with tool observations (rollout/turns.py): 1 on the model's own tokens,
    # 0 on the observations' (no loss, no KL there); the observations' images, after the prompt's in
    # token order, and their placeholder marks over the completion. None: every token is the model's.
    completion_mask: list[int] | None = None
    completion_pixel_values: torch.Tensor | None = None
    completion_image_grid_thw: torch.Tensor | None = None
    completion_mm_token_type_ids: list[int] | None = None

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)

    @property
    def images_in_completion(self) -> bool:
        return self.completion_pixel_values is not None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class TrainBatch:
    samples: list[Sample]
    max_completion_len: int = 0  # for loss aggregations normalised by the max length (Dr.GRPO)


def split_micro_batches(samples: list[Sample], micro_batch_size: int, token_budget: int | None = None,
                        ) -> list[list[Sample]]:
    """Micro-batches of at most `micro_batch_size` samples and, if `token_budget` is set, at most
    `token_budget` padded tokens (rows x longest row).

    Without a budget the batch is cut in its given order (every micro-batch padded to its longest).
    With one, samples are sorted by length and the sorted list is cut into runs: first the fewest
    micro-batches the limits allow (each forward as full as the budget lets it be), then, among the
    cuts that achieve that count, the one that computes the fewest padded tokens. Both are found
    exactly by dynamic programming over the cut points (O(n * runs that fit)). A plain greedy fill
    reaches the same count but puts its cuts wherever the budget runs out, which can leave a short
    sequence padded to nearly twice its length. A sample longer than the budget gets a micro-batch
    of its own."""
    if token_budget is None:
        return [samples[i:i + micro_batch_size] for i in range(0, len(samples), micro_batch_size)]
    ordered = sorted(samples, key=lambda s: s.length)
    lengths = [s.length for s in ordered]
    n = len(ordered)
    # best[j]: (micro-batches, padded tokens) of the best split of ordered[:j]; start[j]: where
    # its last micro-batch begins. Sorted ascending, so ordered[j-1] is the widest of ordered[i:j].
    best: list[tuple[int, int]] = [(0, 0)] + [(n + 1, 0)] * n
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        width = lengths[j - 1]
        for i in range(j - 1, max(j - micro_batch_size, 0) - 1, -1):
            rows = j - i
            if rows > 1 and rows * width > token_budget:
                break  # wider runs only hold more rows of the same width
            count, padded = best[i]
            candidate = (count + 1, padded + rows * width)
            if candidate < best[j]:
                best[j], start[j] = candidate, i
    batches: list[list[Sample]] = []
    j = n
    while j > 0:
        batches.append(ordered[start[j]:j])
        j = start[j]
    return batches[::-1]


def collate(samples: list[Sample], pad_id: int, mask_truncated: bool = False) -> dict[str, torch.Tensor]:
    """Right-padded prompt+completion tensors. `loss_mask[b, t]` is 1 where position t+1 holds a
    completion token, i.e. on the grid of the shifted labels `input_ids[:, 1:]`. `weights` multiply
    each row's loss: 0 for filler samples and, with `mask_truncated`, for completions cut by the
    length limit. `rollout_logprobs` is present only if every sample carries the engine's."""
    width = max(s.length for s in samples)
    n = len(samples)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    loss_mask = torch.zeros((n, width - 1), dtype=torch.float32)
    has_rollout = all(s.rollout_logprobs is not None for s in samples)
    rollout_logp = torch.zeros((n, width - 1), dtype=torch.float32) if has_rollout else None
    has_mm = any(s.prompt_mm_token_type_ids is not None or s.completion_mm_token_type_ids is not None
                 for s in samples)
    mm_types = torch.zeros((n, width), dtype=torch.long) if has_mm else None
    for row, s in enumerate(samples):
        p, c = len(s.prompt_ids), len(s.completion_ids)
        input_ids[row, :p + c] = torch.tensor(s.prompt_ids + s.completion_ids, dtype=torch.long)
        attention_mask[row, :p + c] = 1
        if s.completion_mask is None:
            loss_mask[row, p - 1:p + c - 1] = 1.0
        elif len(s.completion_mask) != c:
            raise ValueError(f"a sample has {c} completion tokens but a mask of {len(s.completion_mask)}")
        else:
            loss_mask[row, p - 1:p + c - 1] = torch.tensor(s.completion_mask, dtype=torch.float32)
        if rollout_logp is not None:
            if len(s.rollout_logprobs) != c:
                raise ValueError(f"a sample has {c} completion tokens but {len(s.rollout_logprobs)} "
                                 "rollout log-probs")
            rollout_logp[row, p - 1:p + c - 1] = torch.tensor(s.rollout_logprobs, dtype=torch.float32)
        if mm_types is not None and s.prompt_mm_token_type_ids is not None:
            mm_types[row, :p] = torch.tensor(s.prompt_mm_token_type_ids, dtype=torch.long)
        if mm_types is not None and s.completion_mm_token_type_ids is not None:
            mm_types[row, p:p + c] = torch.tensor(s.completion_mm_token_type_ids, dtype=torch.long)
    out = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "loss_mask": loss_mask,
        "advantages": torch.tensor([s.advantage for s in samples], dtype=torch.float32),
        "weights": torch.tensor([s.weight for s in samples], dtype=torch.float32),
    }
    if mask_truncated:
        out["weights"] = out["weights"] * truncation_mask([s.finish_reason for s in samples])
    if rollout_logp is not None:
        out["rollout_logprobs"] = rollout_logp
    if mm_types is not None:
        out["mm_token_type_ids"] = mm_types
    # Each row's images in its token order, the prompt's then its observations': the model consumes
    # the flat patch list row by row, image by image.
    pixels = [x for s in samples for x in (s.pixel_values, s.completion_pixel_values) if x is not None]
    if pixels:
        grids = [x for s in samples for x in (s.image_grid_thw, s.completion_image_grid_thw) if x is not None]
        out["pixel_values"] = torch.cat(pixels, dim=0)
        out["image_grid_thw"] = torch.cat(grids)
        out["pixel_counts"] = torch.tensor([sum(len(x) for x in (s.pixel_values, s.completion_pixel_values)
                                                if x is not None) for s in samples])
        out["grid_counts"] = torch.tensor([sum(len(x) for x in (s.image_grid_thw, s.completion_image_grid_thw)
                                               if x is not None) for s in samples])
    if any(s.images_in_completion for s in samples):
        # learner/shared_prompt.py runs a prompt's own images once and each row's observation images
        # in its continuation: it needs to know where one ends and the other begins
        out["images_in_completion"] = torch.tensor([s.images_in_completion for s in samples])
        out["prompt_pixel_counts"] = torch.tensor([0 if s.pixel_values is None else len(s.pixel_values)
                                                   for s in samples])
        out["prompt_grid_counts"] = torch.tensor([0 if s.image_grid_thw is None else len(s.image_grid_thw)
                                                  for s in samples])
    # Which rows share a prompt (tokens and images): learner/shared_prompt.py runs it once for them.
    out["prompt_lens"] = torch.tensor([len(s.prompt_ids) for s in samples])
    out["prefix_of"] = torch.tensor(prefix_rows(samples))
    return out


def _same_prompt(a: Sample, b: Sample) -> bool:
    def same(x, y) -> bool:
        return x is y or (x is not None and y is not None and x.shape == y.shape and torch.equal(x, y))
    return (a.prompt_ids == b.prompt_ids and a.prompt_mm_token_type_ids == b.prompt_mm_token_type_ids
            and same(a.pixel_values, b.pixel_values) and same(a.image_grid_thw, b.image_grid_thw))


def prefix_rows(samples: list[Sample]) -> list[int]:
    """For each row, the first row whose prompt is the same (its own index if none before it is).
    Rows of one group usually carry the very same prompt objects, so `is` settles most pairs."""
    firsts: list[int] = []
    out = []
    for row, s in enumerate(samples):
        first = next((f for f in firsts if _same_prompt(samples[f], s)), None)
        if first is None:
            firsts.append(row)
            first = row
        out.append(first)
    return out


def counted(samples: list[Sample], mask_truncated: bool) -> list[Sample]:
    """The samples whose tokens enter the loss (and so its normalising counts)."""
    return [s for s in samples if s.weight > 0 and not (mask_truncated and s.truncated)]
