"""The transformers engine's sampling loop for the Qwen families (rollout/hf_engine.py).

transformers' `generate()` is general; at rollout batch sizes on a CPU, two of its per-token costs
rival the matmuls: its KV cache grows by concatenation (every step copies the whole cache: a
quarter of the decode time measured at 32 rows x 64 tokens), and `torch.multinomial` draws
through a single-threaded exponential over the whole vocabulary. This loop, for the model types
whose positions it continues (hf_engine.DECODE_TYPES):

- prefills each prompt once and repeats its cache for its n samples (`share_prefill`): the n
  samples of a group share the whole prompt, image included (vLLM's prefix caching does this on GPU);
- writes the cache into buffers reserved for the whole response (`ReservedLayer`);
- samples by inverse CDF from one uniform per row per step, drawn for every row at every step, so
  what a row samples does not depend on which other rows are still running;
- drops finished rows from the batch once a quarter of the running ones has finished, which the
  learning model's uneven response lengths make worth it (generate() decodes every row to the end).

Positions are generate()'s own (`_prepare_position_ids_for_generation`, Qwen-VL's M-RoPE offsets
included), continued by one per token, and the logits go through generate()'s processors in its
order (suppressed tokens, temperature, top-k, top-p): greedy decoding gives generate()'s tokens and
log-probs (tests/test_hf_decode.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from vrft.rollout.engine import SamplingParams

COMPACT_AT = 0.75  # drop finished rows once at most this share of the running rows is still running


class ReservedLayer(DynamicLayer):
    """A KV-cache layer whose keys and values live in buffers sized for the whole response: each
    step writes its token in place, where `DynamicLayer` concatenates (copies) the whole cache."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, extra: int):
        super().__init__()
        rows, heads, length, dim = keys.shape
        self._k = keys.new_empty(rows, heads, length + extra, dim)
        self._v = values.new_empty(rows, values.shape[1], length + extra, values.shape[3])
        self._k[:, :, :length], self._v[:, :, :length] = keys, values
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._set_length(length)

    def _set_length(self, length: int) -> None:
        self.length = length
        self.keys, self.values = self._k[:, :, :length], self._v[:, :, :length]

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        self._k[:, :, self.length:end], self._v[:, :, self.length:end] = key_states, value_states
        self._set_length(end)
        return self.keys, self.values

    def keep_rows(self, rows: torch.Tensor) -> None:
        self._k, self._v = self._k.index_select(0, rows), self._v.index_select(0, rows)
        self._set_length(self.length)


def reserve(cache: DynamicCache, extra: int) -> DynamicCache:
    """The cache's full-attention layers moved into buffers with room for `extra` more tokens each.
    Other layers (a sliding window's, which drops old tokens) keep their own update."""
    cache.layers = [ReservedLayer(layer.keys, layer.values, extra) if type(layer) is DynamicLayer else layer
                    for layer in cache.layers]
    return cache


def warp(logits: torch.Tensor, sampling: SamplingParams, suppress: torch.Tensor | None) -> torch.Tensor:
    """generate()'s logits processors, in its order: suppressed tokens, temperature, top-k, top-p
    (transformers' SuppressTokens, Temperature, TopK and TopP processors)."""
    if suppress is not None:
        logits = logits.index_fill(-1, suppress, float("-inf"))
    if sampling.temperature == 0:
        return logits
    logits = logits / sampling.temperature
    if sampling.top_k > 0:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ascending, order = torch.sort(logits, descending=False)
        drop = ascending.softmax(-1).cumsum(-1) <= 1 - sampling.top_p
        drop[:, -1] = False  # the most likely token always stays
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def pick(warped: torch.Tensor, uniforms: torch.Tensor, greedy: bool) -> torch.Tensor:
    """Each row's token: the argmax (greedy), else the inverse CDF of its distribution at its uniform."""
    if greedy:
        return warped.argmax(-1)
    probs = warped.softmax(-1)
    cdf = probs.cumsum(-1)
    tokens = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    tokens = tokens.clamp_(max=probs.shape[-1] - 1)
    # A uniform at the top of a row's range may round past its last token of non-zero probability:
    # that row takes that token (where the running count of such tokens first reaches its maximum).
    impossible = probs.gather(-1, tokens[:, None]).squeeze(-1) == 0
    if impossible.any():
        tokens[impossible] = (probs[impossible] > 0).cumsum(-1).argmax(-1)
    return tokens


def continuation(positions: torch.Tensor) -> torch.Tensor:
    """The first response token's positions: one past each row's last prompt position (generate()'s
    rule; with M-RoPE in each of the four rows, so every row keeps its image offset)."""
    return positions[..., -1:] + 1


@dataclass
class Decoded:
    """Per row (prompt-major, n samples each): its tokens up to and with its stop token, their
    log-probs (log_softmax(logits / T) over the vocabulary left once the suppressed tokens are
    banned, before top-k/top-p, as vLLM reports them and the learner computes them), and whether it
    stopped at a stop token."""
    token_ids: list[list[int]]
    logprobs: list[list[float]]
    stopped: list[bool]


def _prefill(model, batch: dict[str, torch.Tensor], positions: torch.Tensor):
    """The prompts' forward: the cache, and the logits of each row's first response token."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values",
                                    "image_grid_thw") if k in batch}
    out = model(**inputs, position_ids=positions, use_cache=True, logits_to_keep=1)
    return out.past_key_values, out.logits[:, -1].float()


@torch.no_grad()
def decode(model, batch: dict[str, torch.Tensor], repeat: int, sampling: SamplingParams, stop_ids: set[int],
           suppress: list[int] | None = None) -> Decoded:
    """Sample one response for each of `repeat` copies of each row of the collated, left-padded
    prompt batch: each row is prefilled once and its cache repeated (the engine gives each prompt
    once with `repeat` = n, or n copies with `repeat` = 1 to prefill every row). Rows come out
    row-major (a row's copies together). Uses the global torch RNG, as generate() does."""
    rows = batch["input_ids"].shape[0] * repeat
    steps = sampling.max_new_tokens
    device = batch["input_ids"].device
    kwargs = {k: v for k, v in batch.items() if k != "input_ids"}
    positions = model._prepare_position_ids_for_generation(batch["input_ids"], kwargs)  # [(4,) B, L]
    if hasattr(getattr(model, "model", None), "rope_deltas"):
        model.model.rope_deltas = None  # set by the call above; this loop passes positions itself
    cache, logits = _prefill(model, batch, positions)
    if repeat > 1:
        cache.batch_repeat_interleave(repeat)
        logits = logits.repeat_interleave(repeat, dim=0)
    cache = reserve(cache, steps)
    prompt_len = batch["input_ids"].shape[1]
    mask = torch.ones(rows, prompt_len + steps, dtype=batch["attention_mask"].dtype, device=device)
    mask[:, :prompt_len] = batch["attention_mask"].repeat_interleave(repeat, dim=0)
    next_position = continuation(positions).repeat_interleave(repeat, dim=-2)
    suppress_ids = torch.tensor(suppress, device=device) if suppress else None
    stops = torch.tensor(sorted(stop_ids), device=device)
    greedy = sampling.temperature == 0
    scale = 1.0 if greedy else sampling.temperature

    tokens = torch.zeros(rows, steps, dtype=torch.long, device=device)
    logprobs = torch.zeros(rows, steps, dtype=torch.float32, device=device)
    lengths = torch.full((rows,), steps, dtype=torch.long, device=device)
    stopped = torch.zeros(rows, dtype=torch.bool, device=device)
    running = torch.arange(rows, device=device)  # the original row of each row still in the batch
    for t in range(steps):
        uniforms = None if greedy else torch.rand(rows, device=device)[running]
        # Banned tokens at -inf: never sampled, and out of the log-probs' normaliser.
        allowed = logits if suppress_ids is None else logits.index_fill(-1, suppress_ids, float("-inf"))
        chosen = pick(warp(allowed, sampling, None), uniforms, greedy)
        tokens[running, t] = chosen
        logprobs[running, t] = torch.log_softmax(allowed / scale, -1).gather(-1, chosen[:, None]).squeeze(-1)
        ends = torch.isin(chosen, stops) & ~stopped[running]
        lengths[running[ends]] = t + 1
        stopped[running[ends]] = True
        alive = ~stopped[running]
        if t + 1 == steps or not alive.any():
            break
        if alive.sum() <= COMPACT_AT * len(running):
            keep = alive.nonzero().squeeze(-1)
            for layer in cache.layers:
                if isinstance(layer, ReservedLayer):
                    layer.keep_rows(keep)
                else:
                    layer.batch_select_indices(keep)
            running, chosen, next_position = running[keep], chosen[keep], next_position.index_select(-2, keep)
            mask = mask[keep]
        logits = model(input_ids=chosen[:, None], attention_mask=mask[:, :prompt_len + t + 1],
                       position_ids=next_position, past_key_values=cache, use_cache=True,
                       **({"mm_token_type_ids": torch.zeros_like(chosen[:, None])}
                          if "mm_token_type_ids" in batch else {})).logits[:, -1].float()
        next_position = next_position + 1
    lengths, tokens, logprobs = lengths.tolist(), tokens.cpu(), logprobs.cpu()
    return Decoded([tokens[r, :lengths[r]].tolist() for r in range(rows)],
                   [logprobs[r, :lengths[r]].tolist() for r in range(rows)], stopped.tolist())

