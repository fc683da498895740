"""Prompt building, the processor loader, and left-padded / repeated generation batches."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText

from vrft.rollout.inputs import PromptInputs, build_prompt_inputs, collate_prompts, split_pixel_values
from vrft.rollout.processor import (
    QWEN2_VL_CHAT_TEMPLATE,
    VLProcessor,
    load_processor,
    vision_special_token_ids,
)
from vrft.testing.synthetic import sample_task


@pytest.fixture(scope="module")
def processor(tiny_model) -> VLProcessor:
    return load_processor(tiny_model)


@pytest.fixture(scope="module")
def model(tiny_model):
    return AutoModelForImageTextToText.from_pretrained(tiny_model).eval()


@pytest.fixture(scope="module")
def prompts(processor) -> list[PromptInputs]:
    """Different lengths and image layouts: one image, two images of different sizes, text only."""
    import random

    rng = random.Random(0)
    one = sample_task("counting", rng)
    det = sample_task("detection", rng)
    wide = Image.new("RGB", (112, 56), (0, 0, 255))
    return [
        build_prompt_inputs(processor, one.problem, [one.image]),
        build_prompt_inputs(processor, "Compare the two images.", [det.image, wide]),
        build_prompt_inputs(processor, "What is two plus two?", []),
    ]


def test_prompt_layout(processor, prompts):
    tok = processor.tokenizer
    p = prompts[0]
    text = tok.decode(p.input_ids)
    # Qwen2-VL format, image before the text, generation prompt at the end, default system turn.
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                           "<|vision_start|><|image_pad|>")
    assert text.index("<|vision_end|>") < text.index("How many")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    # A 56x56 image: 4x4 patches of 14 px, merged 2x2 into 4 placeholder tokens.
    assert p.image_grid_thw.tolist() == [[1, 4, 4]] and p.image_grid_thw.dtype == torch.long
    assert p.pixel_values.shape == (16, 3 * 2 * 14 * 14) and p.pixel_values.dtype == torch.float32
    assert p.num_patches == 16 and p.num_images == 1
    assert len(p.mm_token_type_ids) == len(p.input_ids)
    assert p.mm_token_type_ids == [int(t == processor.image_token_id) for t in p.input_ids]
    assert sum(p.mm_token_type_ids) == 4
    assert [im.mode for im in p.images] == ["RGB"]
    two = prompts[1]
    assert two.image_grid_thw.tolist() == [[1, 4, 4], [1, 4, 8]]
    assert sum(two.mm_token_type_ids) == 4 + 8 and two.num_patches == 16 + 32
    text_only = prompts[2]
    assert text_only.pixel_values is None and text_only.image_grid_thw is None
    assert text_only.mm_token_type_ids is None and text_only.images == []


def test_system_prompt_and_rgb(processor):
    gray = Image.new("L", (56, 56), 128)
    p = build_prompt_inputs(processor, "Hi", [gray], system_prompt="Be brief.")
    text = processor.tokenizer.decode(p.input_ids)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and "helpful assistant" not in text
    assert p.images[0].mode == "RGB"


def test_collate_layout(prompts):
    batch = collate_prompts(prompts, pad_token_id=0, repeat=3)
    assert set(batch) == {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"}
    width = max(len(p) for p in prompts)
    assert batch["input_ids"].shape == (9, width)
    for row in range(9):
        p = prompts[row // 3]  # prompt0 x3, prompt1 x3, prompt2 x3
        n = len(p)
        assert batch["input_ids"][row, width - n:].tolist() == p.input_ids
        assert (batch["input_ids"][row, : width - n] == 0).all()
        assert batch["attention_mask"][row].tolist() == [0] * (width - n) + [1] * n
        mm = p.mm_token_type_ids or [0] * n
        assert batch["mm_token_type_ids"][row].tolist() == [0] * (width - n) + mm
    # Patches: prompt0's image x3, then prompt1's two images x3, in row order.
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]] * 3 + [[1, 4, 4], [1, 4, 8]] * 3
    blocks = split_pixel_values(batch["pixel_values"], batch["image_grid_thw"])
    expected = [prompts[0].pixel_values] * 3 + split_pixel_values(prompts[1].pixel_values,
                                                                  prompts[1].image_grid_thw) * 3
    assert len(blocks) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(blocks, expected, strict=True))


def test_collate_text_only_has_no_pixel_keys(prompts):
    batch = collate_prompts([prompts[2]], pad_token_id=0, repeat=2)
    assert set(batch) == {"input_ids", "attention_mask", "mm_token_type_ids"}
    with pytest.raises(ValueError):
        collate_prompts([], pad_token_id=0)


def test_batched_forward_matches_single_prompts(model, processor, prompts):
    """Left padding and repetition must not change any prompt's logits."""
    pad = processor.tokenizer.pad_token_id
    with torch.no_grad():
        batched = model(**collate_prompts(prompts, pad, repeat=2)).logits
        for i, p in enumerate(prompts):
            alone = model(**collate_prompts([p], pad)).logits[0]
            n = len(p)
            for r in range(2):
                torch.testing.assert_close(batched[2 * i + r, -n:], alone, atol=1e-4, rtol=0)


def test_generate_on_collated_batch(model, processor, prompts):
    pad = processor.tokenizer.pad_token_id
    suppress = vision_special_token_ids(processor.tokenizer)
    for group in (prompts, prompts[2:]):  # mixed, and text only
        batch = collate_prompts(group, pad, repeat=2)
        torch.manual_seed(0)
        with torch.no_grad():
            out = model.generate(**batch, do_sample=True, max_new_tokens=8, suppress_tokens=suppress)
        assert out.shape[0] == 2 * len(group)
        new = out[:, batch["input_ids"].shape[1]:]
        assert 0 < new.shape[1] <= 8
        assert not torch.isin(new, torch.tensor(suppress)).any()


def test_vision_special_token_ids(processor):
    tok = processor.tokenizer
    ids = vision_special_token_ids(tok)
    names = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    assert ids == [tok.convert_tokens_to_ids(n) for n in names]  # no <|vision_pad|> in the tiny vocab


def test_load_processor_pixel_bounds(tiny_model):
    image = Image.new("RGB", (112, 112), (255, 0, 0))
    default = load_processor(tiny_model)  # tiny: max 28*28*16 -> 112x112 stays, 8x8 patches
    assert build_prompt_inputs(default, "x", [image]).image_grid_thw.tolist() == [[1, 8, 8]]
    capped = load_processor(tiny_model, max_pixels=28 * 28 * 4)  # down to 56x56
    assert build_prompt_inputs(capped, "x", [image]).image_grid_thw.tolist() == [[1, 4, 4]]
    raised = load_processor(tiny_model, min_pixels=28 * 28 * 9)  # 56x56 up to 84x84
    small = Image.new("RGB", (56, 56))
    assert build_prompt_inputs(raised, "x", [small]).image_grid_thw.tolist() == [[1, 6, 6]]
    assert default.tokenizer.padding_side == "left"
    with pytest.raises(ValueError):
        load_processor(tiny_model, min_pixels=10_000, max_pixels=5_000)


def test_processor_save_and_from_pretrained(processor, tmp_path):
    processor.save_pretrained(tmp_path / "p")
    again = VLProcessor.from_pretrained(tmp_path / "p")
    assert type(again.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert again.image_processor.size == processor.image_processor.size
    assert again.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert again.chat_template == processor.chat_template
    image = Image.new("RGB", (56, 56), (0, 255, 0))
    a = build_prompt_inputs(processor, "Hi", [image])
    b = build_prompt_inputs(again, "Hi", [image])
    assert a.input_ids == b.input_ids and torch.equal(a.pixel_values, b.pixel_values)


def test_loads_a_hub_style_folder(tiny_model, tmp_path):
    """The layout of Qwen/Qwen2-VL-2B-Instruct: preprocessor_config.json naming the torchvision
    class, chat_template.json, no processor_config.json. We must read it with the PIL class."""
    folder = tmp_path / "hub"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{tiny_model}/{name}", folder / name)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
    }))
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": QWEN2_VL_CHAT_TEMPLATE}))
    proc = load_processor(str(folder), max_pixels=401408)
    assert type(proc.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert proc.image_processor.size.shortest_edge == 3136 and proc.image_processor.size.longest_edge == 401408
    assert proc.chat_template == QWEN2_VL_CHAT_TEMPLATE
    image = Image.new("RGB", (280, 140))
    assert build_prompt_inputs(proc, "x", [image]).image_grid_thw.tolist() == [[1, 10, 20]]


def test_missing_path_is_one_line_error(tmp_path):
    for bad in (str(tmp_path / "no" / "model"), "./not-here", "bad:name"):
        with pytest.raises((FileNotFoundError, ValueError)) as info:
            load_processor(bad)
        message = str(info.value)
        assert bad in message and "\n" not in message
