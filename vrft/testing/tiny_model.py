"""The offline model factory: Qwen2-VL / Qwen2.5-VL / Qwen3-VL architectures with random weights.

No model hub is reachable in tests or the CPU demo, so the project makes its own checkpoints:
a byte-level BPE tokenizer trained here on the synthetic tasks' text, the Qwen special tokens and
chat format, a PIL image processor, and a seeded random model. The folder loads like a Hub
checkpoint: `AutoModelForImageTextToText.from_pretrained(out)` and `vrft.rollout.processor.load_processor(out)`.

Sizes:
- "tiny" (~0.2M parameters) for unit tests: everything runs in milliseconds.
- "small" (~15M) for the CPU demo, which has to learn the synthetic tasks within minutes on 2 cores.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForImageTextToText, GenerationConfig, PreTrainedTokenizerFast
from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl import Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from vrft.rollout.families import FAMILIES
from vrft.rollout.processor import QWEN2_VL_CHAT_TEMPLATE, QWEN3_VL_CHAT_TEMPLATE, VLProcessor, load_processor
from vrft.testing.synthetic import COLORS, SHAPES, TASKS, sample_task

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added as ordinary (non-special) tokens: decode(skip_special_tokens=True) keeps them, so rewards
# see the tags, and a tiny model emits each tag as one token, which makes the format quick to learn.
FORMAT_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
# Qwen's tool-call tags, one token each as in the released tokenizers: only in a model made for the
# image-tool tests (`tool_tokens=True`), so every other tiny model keeps its exact vocabulary.
TOOL_TOKENS = ("<tool_call>", "</tool_call>")


def _tool_words() -> tuple[str, ...]:
    """The tool model's added tokens: the tags, and the tools demo's quarter names and four zoom boxes
    as words. Qwen spells a number digit by digit (so does this tokenizer); a 15M model trained from
    scratch for a few minutes does not learn to copy four digit runs in place, and writes an average
    of the boxes it saw. As words, choosing a box is one token: the demo tests whether the model
    looks, not its spelling. The zoom tool still parses the same JSON text."""
    from vrft.testing.glyphs import WORDS

    return (*TOOL_TOKENS, *WORDS)

ARCHS = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
_MODEL_CLASSES = {"qwen2_vl": Qwen2VLForConditionalGeneration, "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
                  "qwen3_vl": Qwen3VLForConditionalGeneration}

# head_dim = hidden / heads; M-RoPE splits head_dim/2 rotary frequencies into (t, h, w) sections.
_TEXT = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, mrope_section=[2, 3, 3]),
    "small": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=6,
                  num_key_value_heads=2, mrope_section=[8, 12, 12]),
}
_VISION = {
    "tiny": dict(depth=2, width=32, heads=2),
    "small": dict(depth=4, width=256, heads=4),
}
_VOCAB = {"tiny": 384, "small": 1024}
# Pixel bounds: a 56x56 image is 4x4 patches of 14 px = 4 merged image tokens; "small" also takes
# up to 224x224 (64 tokens) for tasks drawn larger.
_PIXELS = {"tiny": (28 * 28 * 4, 28 * 28 * 16), "small": (28 * 28 * 4, 28 * 28 * 64)}

SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    # The R1 system prompt Visual-RFT uses at evaluation time.
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think><answer> answer here "
    "</answer>.",
)
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve "
                "twenty thirty forty fifty hundred thousand").split()


def _corpus(n_per_task: int = 300) -> Iterator[str]:
    """Chat-formatted text of the synthetic tasks plus the words a policy may need to say."""
    rng = random.Random("vrft-tokenizer-corpus")
    for task in TASKS:
        for _ in range(n_per_task):
            sample = sample_task(task, rng)
            cot = f"<think>{sample.thought}</think><answer>{sample.answer}</answer>"
            yield (
                f"<|im_start|>system\n{SYSTEM_PROMPTS[0]}<|im_end|>\n<|im_start|>user\n"
                f"<|vision_start|><|image_pad|><|vision_end|>{sample.problem}<|im_end|>\n"
                f"<|im_start|>assistant\n{cot}<|im_end|>\n"
            )
    yield from SYSTEM_PROMPTS
    words = [*NUMBER_WORDS, *COLORS, *SHAPES, *(s + "s" for s in SHAPES), "Position", "Confidence",
             "No Objects", "answer", "boxes", "number", "color", "shape", "image", "I see", "The"]
    for _ in range(200):
        yield " ".join(rng.choice(words) for _ in range(8))
        yield f'{{"answer": "{rng.randint(0, 9)}"}} [{rng.randint(0, 1000)}, {rng.randint(0, 1000)}]'


def _split_reserved(texts: Iterator[str], added: tuple[str, ...] = ()) -> Iterator[str]:
    # The BPE trainer does not cut out added/special tokens: feed only the text between them,
    # so no merges are spent on spelling "<|im_start|>" out of bytes. The tool tags are cut out for
    # every model (its corpus holds them), the longest word first.
    words = sorted({*SPECIAL_TOKENS, *FORMAT_TOKENS, *TOOL_TOKENS, *added}, key=lambda w: (-len(w), w))
    reserved = re.compile("|".join(map(re.escape, words)))
    for text in texts:
        yield from (piece for piece in reserved.split(text) if piece)


def build_tokenizer(vocab_size: int = 1024, chat_template: str = QWEN2_VL_CHAT_TEMPLATE,
                    tool_tokens: bool = False) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the synthetic tasks' text, with the Qwen special tokens.

    Pre-tokenization isolates each digit (as Qwen2 does, so numbers are digit sequences) but does
    not split at spaces: merges may span words, so the fixed prompt phrases become a few tokens and
    CPU sequences stay short. Any text still round-trips exactly (byte-level).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    added = FORMAT_TOKENS + (_tool_words() if tool_tokens else ())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(added),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=128 if tool_tokens else 32,  # the tools prompt: see glyphs.corpus
        show_progress=False,
    )
    corpus = _corpus()
    if tool_tokens:  # a model made for the image tools also learns the tools demo's words
        from vrft.testing.glyphs import corpus as glyph_corpus

        corpus = itertools.chain(corpus, glyph_corpus())
    tok.train_from_iterator(_split_reserved(corpus, added), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=chat_template,
        model_max_length=32768,
    )


def _model_config(arch: str, size: str, tokenizer: PreTrainedTokenizerFast, tie_word_embeddings: bool = False):
    ids = tokenizer.get_vocab()
    t = dict(_TEXT[size])
    mrope = t.pop("mrope_section")
    assert sum(mrope) * 2 == t["hidden_size"] // t["num_attention_heads"], "mrope_section must sum to head_dim/2"
    text = dict(
        **t,
        # The exact tokenizer length: extra logit rows would be ids a random policy samples and
        # the tokenizer cannot decode.
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    v = _VISION[size]
    common = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        # Top-level, where Qwen2-VL-2B's config.json has it: the output layer is the embedding.
        tie_word_embeddings=tie_word_embeddings,
    )
    if arch == "qwen2_vl":
        vision = dict(depth=v["depth"], embed_dim=v["width"], hidden_size=t["hidden_size"], num_heads=v["heads"],
                      mlp_ratio=4)
        return Qwen2VLConfig(text_config=text, vision_config=vision, **common)
    if arch == "qwen3_vl":
        # Qwen3-VL: 16 px patches, learned position embeddings on a square grid (interpolated to the
        # image), DeepStack features from the listed vision blocks added to the first text layers,
        # interleaved M-RoPE; head_dim is explicit in its text config.
        text["head_dim"] = t["hidden_size"] // t["num_attention_heads"]
        text["rope_parameters"] = {**text["rope_parameters"], "mrope_interleaved": True}
        vision = dict(depth=v["depth"], hidden_size=v["width"], intermediate_size=v["width"] * 4,
                      num_heads=v["heads"], out_hidden_size=t["hidden_size"], patch_size=16,
                      spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                      deepstack_visual_indexes=[0])
        return Qwen3VLConfig(text_config=text, vision_config=vision, **common)
    # Qwen2.5-VL's vision tower: RMSNorm + SwiGLU blocks, windowed attention except in the
    # `fullatt_block_indexes` blocks (the last one here, as every 8th in the real 32-block tower),
    # and `out_hidden_size` = the text width the merger projects to. window_size is in pixels:
    # 112 px = 4x4 merged tokens, so a 56x56 image is a single window.
    vision = dict(depth=v["depth"], hidden_size=v["width"], intermediate_size=v["width"] * 4,
                  num_heads=v["heads"], out_hidden_size=t["hidden_size"], window_size=112,
                  fullatt_block_indexes=[v["depth"] - 1], tokens_per_second=2)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())



def prefer_token(model: torch.nn.Module, token: int, margin: float = 200.0) -> None:
    """Make `model` (a loaded causal LM, in place) put `token` `margin` logits above every other
    token at every position, whatever the input: the token embeddings all equal, every layer's
    attention and MLP outputs zero (the last hidden state is that embedding), and `token`'s output
    row along its normed direction. The tests of the ban on special tokens use it: a policy that
    would sample `<|image_pad|>` every time unless the engine forbids it."""
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb.copy_(emb.mean(0).expand_as(emb).clone())
        decoder = model.get_decoder()
        for layer in decoder.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        hidden = decoder.norm(emb[:1].clone())[0]
        head = model.get_output_embeddings().weight
        logits = head @ hidden
        logits[token] = -float("inf")
        head[token] = hidden * (float(logits.max()) + margin) / float(hidden @ hidden)

def make_tiny_model(out: str | Path, arch: str = "qwen2_vl", size: str = "tiny", seed: int = 0,
                    tie_word_embeddings: bool = False, tool_tokens: bool = False,
                    max_pixels: int | None = None) -> Path:
    """Build a random-weight `arch` model of `size` with its tokenizer and image processor in `out`
    (`tie_word_embeddings`: one matrix for the input embedding and the output layer, as the 2B models;
    `tool_tokens`: Qwen's tool-call tags and the tools demo's quarter names and zoom boxes in the
    vocabulary, and the demo's words in its corpus;
    `max_pixels`: the image processor's bound instead of the size's, for 14-pixel patches)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    if size not in _TEXT:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(_TEXT)}")
    out = Path(out)
    family = FAMILIES[arch]
    template = QWEN3_VL_CHAT_TEMPLATE if arch == "qwen3_vl" else QWEN2_VL_CHAT_TEMPLATE
    tokenizer = build_tokenizer(_VOCAB[size], chat_template=template, tool_tokens=tool_tokens)
    # The same number of image tokens in every family: the pixel bounds scale with the patch area.
    scale = (family.patch_size / 14) ** 2
    low, high = _PIXELS[size][0], max_pixels or _PIXELS[size][1]
    min_pixels, max_pixels = (int(p * scale) for p in (low, high))
    extra = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3} if arch == "qwen3_vl" else {}
    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels,
                                               patch_size=family.patch_size, **extra)
    processor = VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)
    config = _model_config(arch, size, tokenizer, tie_word_embeddings)
    model_cls = _MODEL_CLASSES[arch]
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = model_cls(config).float()
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _name_standard_processor(out, arch, min_pixels, max_pixels)
    _verify(out, model)
    return out


def _name_standard_processor(out: Path, arch: str, min_pixels: int, max_pixels: int) -> None:
    """Make the folder look like a Hub Qwen2-VL checkpoint to tools that use AutoProcessor (vLLM,
    and transformers where torchvision works): name the stock processor class instead of our
    VLProcessor (which ignores the name), and add the video processor settings it asks for."""
    family = FAMILIES[arch]
    name = family.processor_class
    for file in ("processor_config.json", "tokenizer_config.json"):
        path = out / file
        data = json.loads(path.read_text())
        data["processor_class"] = name
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    video = {
        "video_processor_type": family.video_processor_class,
        "processor_class": name,
        "patch_size": family.patch_size,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
    }
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2, sort_keys=True) + "\n")


def _verify(out: Path, model: torch.nn.Module) -> None:
    """Load the folder back the way users will and check the weights came back unchanged."""
    loaded = AutoModelForImageTextToText.from_pretrained(out)
    mine, theirs = model.state_dict(), loaded.state_dict()
    if mine.keys() != theirs.keys() or any(not torch.equal(mine[k], theirs[k]) for k in mine):
        raise RuntimeError(f"model saved in {out} does not load back identically")
    load_processor(str(out))


def describe(path: str | Path) -> dict[str, Any]:
    """Parameter counts of a saved model (total, vision tower, language part)."""
    model = AutoModelForImageTextToText.from_pretrained(path)
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    total = count_parameters(model)
    return {"total": total, "vision": vision, "text": total - vision, "vocab": model.config.text_config.vocab_size}
