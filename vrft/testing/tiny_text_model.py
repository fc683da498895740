"""A tiny text-only Qwen2 with random weights, made offline, for the vLLM-on-CPU tests and benchmark.

vLLM's Qwen2-VL cannot run on CPU (its model file needs torchvision), so the vLLM engine is tested
on CPU with the text half of the same family: the `Qwen2ForCausalLM` architecture, the same offline
byte-level BPE tokenizer and Qwen chat template as `tiny_model.make_tiny_model`. The folder loads
with `AutoModelForCausalLM.from_pretrained(out)`, `AutoTokenizer.from_pretrained(out)` and `vllm.LLM(out)`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

from vrft.testing.tiny_model import build_tokenizer

# head_dim = 64 / 2 = 32: vLLM's CPU attention kernels only take some head sizes (32, 64, 80, ...),
# and the 16 of the tiny VLM's text part is not among them.
_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1)
_VOCAB = 384


def make_tiny_text_model(out: str | Path, seed: int = 0) -> Path:
    """Build a random-weight Qwen2ForCausalLM (~0.1M parameters) with its tokenizer in `out`."""
    out = Path(out)
    tokenizer = build_tokenizer(_VOCAB)
    ids = tokenizer.get_vocab()
    config = Qwen2Config(
        **_TEXT,
        # Exactly the tokenizer's length: a random policy never samples an id it cannot decode.
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 1e4},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        # Untied, as in the tiny VLM: lm_head travels through weight sync as its own tensor.
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).float()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    loaded = AutoModelForCausalLM.from_pretrained(out)
    mine, theirs = model.state_dict(), loaded.state_dict()
    if mine.keys() != theirs.keys() or any(not torch.equal(mine[k], theirs[k]) for k in mine):
        raise RuntimeError(f"model saved in {out} does not load back identically")
    return out
