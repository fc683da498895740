"""What the vLLM engine hands to vLLM, as plain data: requests, sampling arguments, engine
arguments for images, and weight names. Nothing here imports vLLM, so it is unit-tested anywhere;
tests/vllm checks the same values against vLLM's own types.

Requests. `PromptInputs.input_ids` come from the transformers processor, which has already expanded
each image's `<|image_pad|>` into one pad per merged patch. vLLM expands placeholders itself from
`multi_modal_data`, so each run of pads is collapsed back to one pad first (OpenRLHF's "dedup media
tokens" lesson: without it the image tokens are counted twice and the prompt breaks). vLLM re-expands
with the same `min_pixels`/`max_pixels` (engine `mm_processor_kwargs`), and the engine checks that
the expanded prompt it ran equals `input_ids`, so the engine and the learner see the same tokens.

Weight names. The learner sends `named_parameters()` names of the transformers model. Since
transformers 4.52 a Qwen2-VL nests its parts as `model.language_model.*` / `model.visual.*`; the Hub
checkpoints, and so every vLLM loader of these models, use `model.*` / `visual.*`. We map to the
checkpoint names explicitly rather than rely on vLLM accepting both spellings (only recent vLLM
versions do); a VLM architecture with no entry is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vrft.rollout.engine import SamplingParams
from vrft.rollout.families import FAMILIES
from vrft.rollout.inputs import PromptInputs
from vrft.wire import renamer


def collapse_image_pads(input_ids: list[int], image_token_id: int) -> list[int]:
    """Each maximal run of `image_token_id` becomes a single one; other tokens are untouched."""
    out: list[int] = []
    for tok in input_ids:
        if tok == image_token_id and out and out[-1] == image_token_id:
            continue
        out.append(tok)
    return out


def count_image_runs(input_ids: list[int], image_token_id: int) -> int:
    return sum(1 for i, tok in enumerate(input_ids)
               if tok == image_token_id and (i == 0 or input_ids[i - 1] != image_token_id))


def build_request(prompt: PromptInputs, image_token_id: int | None) -> dict[str, Any]:
    """A `vllm.inputs.TokensPrompt` (a TypedDict, so a plain dict is one) for one prompt.

    Text-only prompts pass through unchanged; a prompt with images gets its pad runs collapsed and
    its raw images (vLLM preprocesses them itself) as `multi_modal_data={"image": [...]}`.
    """
    if not prompt.images:
        return {"prompt_token_ids": list(prompt.input_ids)}
    if image_token_id is None:
        raise ValueError("a prompt has images but the model has no image token (is it a VLM?)")
    runs = count_image_runs(prompt.input_ids, image_token_id)
    if runs != len(prompt.images):
        raise ValueError(f"prompt has {runs} image placeholder runs but {len(prompt.images)} images")
    return {
        "prompt_token_ids": collapse_image_pads(prompt.input_ids, image_token_id),
        "multi_modal_data": {"image": list(prompt.images)},
    }


def multimodal_engine_args(min_pixels: int | None, max_pixels: int | None, limit_images: int) -> dict[str, Any]:
    """Engine arguments for a VLM: vLLM preprocesses images exactly as the learner does, with the
    learner's pixel bounds, and takes at most `limit_images` images per prompt (videos off, which
    also keeps vLLM from reserving memory for them).

    Why not vLLM's defaults: vLLM 0.32 loads the checkpoint's image processor with transformers'
    torchvision backend, whose antialiased bicubic resize is not PIL's (the learner's,
    rollout/processor.py), and normalises on the device (`mm_device_do_normalize`, a fused affine
    that rounds differently). Token counts and image grids still agree (the same `smart_resize`),
    but pixels differ by up to 16 levels of 8 bits on a noisy image, and the log-probs the
    importance correction compares by up to ~8e-3. `use_fast=False` is how a processor's
    `from_pretrained` picks the PIL backend (`backend="pil"` also reaches the video processor,
    which has no PIL backend); with host normalisation the vision tower gets the learner's pixel
    values bit for bit (tests/vllm/test_preprocessing.py; docs/offline-models.md). The price is
    vLLM's faster torchvision resize and device normalisation, host-side work per image."""
    kwargs: dict[str, Any] = {k: int(v) for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels))
                              if v is not None}
    if "min_pixels" in kwargs and "max_pixels" in kwargs and kwargs["min_pixels"] > kwargs["max_pixels"]:
        raise ValueError(f"min_pixels {min_pixels} > max_pixels {max_pixels}")
    kwargs["use_fast"] = False
    return {"limit_mm_per_prompt": {"image": int(limit_images), "video": 0},
            "mm_processor_kwargs": kwargs, "mm_device_do_normalize": False}


def sampling_kwargs(sampling: SamplingParams, stop_token_ids: list[int], seed: int | None,
                    suppress_token_ids: list[int] | None = None) -> dict[str, Any]:
    """Arguments for `vllm.SamplingParams` for one prompt's group of `sampling.n` samples.

    `logprobs=0` returns the log-prob of the sampled token only. vLLM gives child sample i of a
    group the seed `seed + i`, so the caller spaces prompts' seeds by n to keep samples distinct.

    Suppressed tokens (`vrft.rollout.processor.banned_token_ids`) get a logit bias of -inf: a hard ban.
    vLLM 0.32 adds the bias to the logits (V1 `LogitBiasLogitsProcessor`, V2 `_bias_kernel`) before
    temperature and top-k/top-p, without clamping when `SamplingParams` is built directly (only
    `SamplingParams.from_optional`, the OpenAI server's path, clamps to ±100). So the token's
    probability is exactly 0 and `processed_logprobs` are log_softmax(z/T) over the remaining
    vocabulary, as the learner computes them. The old -100 was no ban: a logit 100 above the rest
    still wins. (`allowed_token_ids` is capped at 1024 ids in V2; `bad_words` goes through the
    tokenizer.)
    """
    kwargs: dict[str, Any] = {
        "n": sampling.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,  # 0 = off, in vLLM as here
        "max_tokens": sampling.max_new_tokens,
        "seed": seed,
        "logprobs": 0,
        "stop_token_ids": sorted(stop_token_ids),
        # The engine decodes the text itself, as the transformers engine does: vLLM's incremental
        # detokenizer holds back a trailing partial UTF-8 character, so its text can differ.
        "detokenize": False,
    }
    if suppress_token_ids:
        kwargs["logit_bias"] = {int(t): float("-inf") for t in suppress_token_ids}
    return kwargs


def score_kwargs(temperature: float, banned: bool = False) -> dict[str, Any]:
    """Teacher-forced log-probs through `prompt_logprobs`: vLLM computes them from the raw logits
    (no temperature, no logit bias), so at T != 1, or with banned tokens to leave out of the
    normaliser, the whole distribution is needed to renormalise (-1)."""
    whole = temperature != 1.0 or banned
    return {"max_tokens": 1, "temperature": 1.0, "prompt_logprobs": -1 if whole else 0, "detokenize": False}


# transformers named_parameters() prefix -> Hub checkpoint prefix, per model_type; first match wins
# (each family's own, rollout/families.py).
_VLM_PREFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    model_type: family.vllm_prefixes for family in FAMILIES.values() for model_type in family.model_types}


def vllm_weight_prefixes(model_type: str, is_vlm: bool) -> list[tuple[str, str]] | None:
    """The family's (transformers prefix, checkpoint prefix) pairs as plain data, for the learner
    to name what it sends as vLLM loads it (learner/transfer.py); None: names as they are."""
    prefixes = _VLM_PREFIXES.get(model_type)
    if prefixes is None and is_vlm:
        raise ValueError(f"no transformers->vLLM weight-name mapping for the VLM model_type "
                         f"{model_type!r}; add one to rollout/families.py (known: {sorted(_VLM_PREFIXES)})")
    return [tuple(p) for p in prefixes] if prefixes else None


def weight_name_mapper(model_type: str, is_vlm: bool) -> Callable[[str], str]:
    """transformers parameter name -> the checkpoint name vLLM's `load_weights` takes.

    Text-only causal LMs (Qwen2, Llama, ...) name their parameters as their checkpoints do: identity.
    """
    return renamer(vllm_weight_prefixes(model_type, is_vlm), model_type)
