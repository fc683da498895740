"""An image-only Qwen2-VL processor that works without torchvision, and its loader.

Why not `AutoProcessor`: with transformers 5.2x, `Qwen2VLProcessor` insists on a video processor,
which needs torchvision (unusable on CPU here), and `AutoProcessor.from_pretrained` then silently
returns only the tokenizer. `VLProcessor` keeps the Qwen2-VL text/image logic (placeholder
expansion, `mm_token_type_ids`) and drops the video half. The image half is always the PIL
implementation `Qwen2VLImageProcessorPil`, even when a checkpoint's preprocessor_config.json names
`Qwen2VLImageProcessor` (the torchvision one), as the real Qwen2-VL and Qwen2.5-VL repos do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.utils import cached_file

from vrft.rollout.families import family_of

# The Qwen2-VL chat format: a default system turn when none is given, images as
# <|vision_start|><|image_pad|><|vision_end|> (expanded to one pad per merged patch by the
# processor), and "<|im_start|>assistant\n" as the generation prompt.
QWEN2_VL_CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}"
    "{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{ 'Picture ' + image_count.value | string + ': ' }}{%- endif -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{ 'Video ' + video_count.value | string + ': ' }}{%- endif -%}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part -%}"
    "{{ part['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# Qwen3-VL's chat format for images and text: Qwen2-VL's without the default system turn.
_DEFAULT_SYSTEM = (
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
)
assert _DEFAULT_SYSTEM in QWEN2_VL_CHAT_TEMPLATE
QWEN3_VL_CHAT_TEMPLATE = QWEN2_VL_CHAT_TEMPLATE.replace(_DEFAULT_SYSTEM, "")

VISION_SPECIAL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>")

# owner/name, as the Hub spells repository ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor for text + images only (no video processor, hence no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # Same token bookkeeping as Qwen2VLProcessor.__init__, which we must skip: it passes a
        # video processor to ProcessorMixin.__init__, whose attributes come from our signature.
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.image_token
        )
        self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.video_token
        )
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        # The default would load the image processor through AutoImageProcessor, which may pick the
        # torchvision class; build the PIL one from the same saved settings instead.
        kwargs.pop("subfolder", None)
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        settings = (processor_dict or {}).get("image_processor")
        if isinstance(settings, dict):
            image_processor = Qwen2VLImageProcessorPil(**_image_processor_kwargs(settings))
        else:
            image_processor = _load_image_processor(str(pretrained_model_name_or_path), **kwargs)
        return [image_processor, tokenizer]


def _image_processor_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings from a preprocessor/processor config, cleaned for Qwen2VLImageProcessorPil(**...)."""
    settings = dict(settings)
    for key in ("image_processor_type", "processor_class", "_processor_class", "auto_map"):
        settings.pop(key, None)
    size = settings.pop("size", None)
    if isinstance(size, dict):
        # Old configs spell the bounds min_pixels/max_pixels inside `size`; new ones use
        # shortest_edge/longest_edge (which, for Qwen2-VL, are pixel counts, not edges).
        lo = size.get("shortest_edge", size.get("min_pixels"))
        hi = size.get("longest_edge", size.get("max_pixels"))
        settings.setdefault("min_pixels", lo)
        settings.setdefault("max_pixels", hi)
    return {k: v for k, v in settings.items() if v is not None}


def _image_processor_settings(path_or_id: str, **hub_kwargs: Any) -> dict[str, Any]:
    """Image processor settings from preprocessor_config.json (Hub repos, older saves) or from the
    "image_processor" entry of processor_config.json (what transformers 5 save_pretrained writes)."""
    hub_kwargs = {k: v for k, v in hub_kwargs.items() if k in ("cache_dir", "revision", "token", "local_files_only")}
    for name in ("preprocessor_config.json", "processor_config.json"):
        file = cached_file(path_or_id, name, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if file is None:
            continue
        config = json.loads(Path(file).read_text())
        if name == "processor_config.json":
            config = config.get("image_processor")
        if isinstance(config, dict):
            return _image_processor_kwargs(config)
    raise FileNotFoundError(f"no image processor settings (preprocessor_config.json) in {path_or_id}")


def _load_image_processor(path_or_id: str, **hub_kwargs: Any) -> Qwen2VLImageProcessorPil:
    return Qwen2VLImageProcessorPil(**_image_processor_settings(path_or_id, **hub_kwargs))


def _chat_template(path_or_id: str, tokenizer: Any, **hub_kwargs: Any) -> str:
    """The checkpoint's chat template: the tokenizer's, else chat_template.jinja/.json, else its family's."""
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        return tokenizer.chat_template
    for name in ("chat_template.jinja", "chat_template.json"):
        file = cached_file(path_or_id, name, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if file is not None:
            text = Path(file).read_text()
            return json.loads(text)["chat_template"] if name.endswith(".json") else text
    family = family_of(path_or_id)
    return QWEN3_VL_CHAT_TEMPLATE if family is not None and not family.default_system else QWEN2_VL_CHAT_TEMPLATE


def load_processor(
    path_or_id: str,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    trust_remote_code: bool = False,
) -> VLProcessor:
    """Load tokenizer + PIL image processor from a local folder or a Hub model id.

    `min_pixels`/`max_pixels` override the checkpoint's image size bounds (Visual-RFT trains with
    3136 / 401408). The tokenizer pads on the left, as batched generation needs.
    """
    path_or_id = str(path_or_id)
    local = Path(path_or_id).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ValueError(f"model path is not a folder: {path_or_id}")
        path_or_id = str(local)
    elif not _HUB_ID.match(path_or_id):
        raise FileNotFoundError(f"model not found: {path_or_id} (neither a folder nor a Hub id owner/name)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=trust_remote_code)
    except OSError as e:
        if local.exists():
            raise
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FileNotFoundError(f"model not found: {path_or_id} (no such folder; Hub: {first_line})") from e
    tokenizer.padding_side = "left"
    settings = _image_processor_settings(path_or_id)
    if min_pixels is not None:
        settings["min_pixels"] = int(min_pixels)
    if max_pixels is not None:
        settings["max_pixels"] = int(max_pixels)
    if settings.get("min_pixels", 0) > settings.get("max_pixels", float("inf")):
        raise ValueError(f"min_pixels {settings['min_pixels']} > max_pixels {settings['max_pixels']}")
    image_processor = Qwen2VLImageProcessorPil(**settings)
    chat_template = _chat_template(path_or_id, tokenizer)
    return VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)


def vision_special_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the vision special tokens the tokenizer has (a subset of `banned_token_ids`)."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in VISION_SPECIAL_TOKENS if t in vocab]


# The special tokens a policy legitimately emits: the end of its turn and the end of text (the
# engines stop on them; SFT targets end with the first). Every other special token is banned.
EMITTED_SPECIAL_TOKENS = ("<|im_end|>", "<|endoftext|>")
# Image/video placeholders of other model formats (LLaVA, ShareGPT data): plain text to a Qwen
# tokenizer, but in a row's text they mean the row was written for another model's prompt format.
FOREIGN_PLACEHOLDERS = ("<image>", "<video>")


def special_token_strings(tokenizer: Any) -> list[str]:
    """Every special token of the tokenizer as text: its added tokens marked special, and the vision
    tokens by name even where a tokenizer registers them as ordinary added tokens. Added tokens that
    are not special (Qwen3's `<think>`, the tiny model's format tags) are plain text to the policy."""
    vocab = tokenizer.get_vocab()
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    found = {token.content for token in added.values() if getattr(token, "special", False)}
    found |= {t for t in VISION_SPECIAL_TOKENS if t in vocab}
    return sorted(found, key=lambda t: vocab.get(t, -1))


def banned_token_ids(tokenizer: Any) -> list[int]:
    """The ids no rollout engine may ever sample, and that the learner's log-probs leave out of
    their normaliser: every special token (`special_token_strings`) except the emitted ones
    (`EMITTED_SPECIAL_TOKENS` and the tokenizer's eos). The one definition both engines and the
    learner use (docs/learner.md, "Banned tokens").

    Why: a sampled vision placeholder crashes the learner's forward pass hours into a run ("Image
    features and image tokens do not match", veRL #7038), and any other special token in a
    completion (<|im_start|>, <|box_start|>…) is chat-format structure the rewards never see
    (decode drops special tokens). Both engines set these logits to -inf (probability exactly 0),
    so the policy that samples is softmax over the remaining vocabulary, and the learner computes
    the same: log_softmax over the remaining vocabulary."""
    vocab = tokenizer.get_vocab()
    keep = {vocab[t] for t in EMITTED_SPECIAL_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        keep.add(int(tokenizer.eos_token_id))
    banned = sorted({vocab[t] for t in special_token_strings(tokenizer)} - keep)
    vision = set(vision_special_token_ids(tokenizer))
    if vision - set(banned):  # an eos that is a vision token: the tokenizer is broken, refuse it
        raise ValueError(f"the tokenizer's eos token is a vision placeholder ({sorted(vision - set(banned))})")
    return banned


def placeholder_in_text(text: str | None, tokenizer: Any = None) -> str | None:
    """The first special-token or placeholder string found literally in `text` (a prompt's question,
    an SFT target), else None. The tokenizer would turn e.g. a literal `<|image_pad|>` into the image
    token and mis-align the image placeholders (the processor expands every one it finds). Without
    a tokenizer, the Qwen-VL names are checked."""
    if not text:
        return None
    names = special_token_strings(tokenizer) if tokenizer is not None else \
        ["<|im_start|>", *EMITTED_SPECIAL_TOKENS, *VISION_SPECIAL_TOKENS]
    return next((s for s in (*names, *FOREIGN_PLACEHOLDERS) if s in text), None)
