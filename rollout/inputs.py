"""Model inputs for one prompt (chat template + image processor) and batches of them.

A prompt is built once (`build_prompt_inputs`) and the same `PromptInputs` go to the rollout engine
and to the learner, so both see identical prompt tokens. `collate_prompts` makes a left-padded
generation batch in which each prompt appears `repeat` times in a row (the G samples of a group).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image


@dataclass
class PromptInputs:
    """One tokenized prompt.

    `pixel_values` holds the flat patches of all this prompt's images, in order (each image
    contributes `image_grid_thw[i].prod()` rows); `mm_token_type_ids` marks image placeholder
    tokens with 1 and is None for a text-only prompt; `images` are the raw RGB images, for engines
    that run their own preprocessing (vLLM).
    """

    input_ids: list[int]
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    mm_token_type_ids: list[int] | None = None
    images: list[Image.Image] = field(default_factory=list)

    @property
    def num_patches(self) -> int:
        return 0 if self.pixel_values is None else int(self.pixel_values.shape[0])

    @property
    def num_images(self) -> int:
        return 0 if self.image_grid_thw is None else int(self.image_grid_thw.shape[0])

    def __len__(self) -> int:
        return len(self.input_ids)


def build_messages(problem: str, num_images: int, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Chat messages as Visual-RFT builds them: the images first, then the text, in one user turn."""
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": problem}]
    messages.append({"role": "user", "content": content})
    return messages


def tools_text(schemas: list[dict[str, Any]]) -> str:
    """How the tools are announced where a chat template does not render `tools=` itself (Qwen2-VL's
    and Qwen2.5-VL's templates ignore it): Qwen's call format, and each tool's JSON schema a line."""
    lines = "\n".join(json.dumps(s, sort_keys=True) for s in schemas)
    return ("You can look at the image again before you answer. To call a tool, write "
            '<tool_call>{"name": NAME, "arguments": {...}}</tool_call> and stop; its result comes back as '
            f"the next message.\nTools:\n{lines}")


def chat_text(processor: Any, problem: str, num_images: int, system_prompt: str | None = None,
                  tools: list[dict[str, Any]] | None = None) -> str:
    """The chat template applied (with the generation prompt). `tools`: function schemas, given to the
    template's own `tools=`; a template that ignores them gets them in the system turn instead."""
    messages = build_messages(problem, num_images, system_prompt)
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not tools:
        return text
    with_tools = processor.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    if with_tools != text:
        return with_tools
    system = tools_text(tools) if not system_prompt else f"{system_prompt}\n\n{tools_text(tools)}"
    return processor.apply_chat_template(build_messages(problem, num_images, system), tokenize=False,
                                         add_generation_prompt=True)


def build_prompt_inputs(
    processor: Any, problem: str, images: list[Image.Image], system_prompt: str | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> PromptInputs:
    """Apply the chat template (with the generation prompt) and run the processor on one prompt.

    With `system_prompt=None` no system turn is passed, so the checkpoint's template decides (the
    Qwen2-VL template then adds its default "You are a helpful assistant.", as in Visual-RFT).
    `tools`: the schemas of the image tools the model may call (rollout/tools.py).
    """
    images = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
    text = chat_text(processor, problem, len(images), system_prompt, tools)
    encoded = processor(text=[text], images=images or None, return_tensors="pt")
    input_ids = encoded["input_ids"][0].tolist()
    if not images:
        return PromptInputs(input_ids=input_ids)
    mm = encoded.get("mm_token_type_ids")
    if mm is None:  # processors that do not return it: mark the image placeholders ourselves
        mm_ids = [int(t == processor.image_token_id) for t in input_ids]
    else:
        mm_ids = [int(v) for v in mm[0].tolist()]
    return PromptInputs(
        input_ids=input_ids,
        pixel_values=encoded["pixel_values"].to(torch.float32),
        image_grid_thw=encoded["image_grid_thw"].to(torch.long),
        mm_token_type_ids=mm_ids,
        images=images,
    )


def collate_prompts(prompts: list[PromptInputs], pad_token_id: int, repeat: int = 1) -> dict[str, torch.Tensor]:
    """A left-padded batch: prompt0 x repeat, prompt1 x repeat, ...

    Returns `input_ids`, `attention_mask`, `mm_token_type_ids` (0 on padding and for text-only
    prompts), and, when any prompt has images, `pixel_values` / `image_grid_thw` with each
    prompt's patch block repeated in the same row order (the model consumes images in row order).
    """
    if not prompts:
        raise ValueError("collate_prompts needs at least one prompt")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    rows = [p for p in prompts for _ in range(repeat)]
    width = max(len(p.input_ids) for p in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    mm_token_type_ids = torch.zeros((len(rows), width), dtype=torch.long)
    for i, p in enumerate(rows):
        n = len(p.input_ids)
        input_ids[i, width - n :] = torch.tensor(p.input_ids, dtype=torch.long)
        attention_mask[i, width - n :] = 1
        if p.mm_token_type_ids is not None:
            if len(p.mm_token_type_ids) != n:
                raise ValueError("mm_token_type_ids and input_ids differ in length")
            mm_token_type_ids[i, width - n :] = torch.tensor(p.mm_token_type_ids, dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "mm_token_type_ids": mm_token_type_ids}
    with_images = [p for p in rows if p.pixel_values is not None]
    if with_images:
        # Each prompt's pixel_values is exactly its own images' patches, so repeating whole per-
        # prompt blocks keeps patches aligned with image_grid_thw.prod(-1) and with row order.
        batch["pixel_values"] = torch.cat([p.pixel_values for p in with_images], dim=0)
        batch["image_grid_thw"] = torch.cat([p.image_grid_thw for p in with_images], dim=0)
    return batch


def split_pixel_values(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> list[torch.Tensor]:
    """The patch block of each image of a flat `pixel_values` (sizes `image_grid_thw.prod(-1)`)."""
    sizes = image_grid_thw.prod(-1).tolist()
    if sum(sizes) != pixel_values.shape[0]:
        raise ValueError(f"pixel_values has {pixel_values.shape[0]} patches, image_grid_thw says {sum(sizes)}")
    return list(torch.split(pixel_values, sizes, dim=0))
