"""What the learner sends to the engines and writes as a model folder (learner/lora.py
`plain_entries`, learner/checkpoint_layout.py):

- LoRA on some projections of a block that vLLM fuses (q/k/v into qkv_proj) sends the whole
  block, biases included: a fused layer loaded in part keeps uninitialised memory in the rest, and
  one missing its bias holds every bucket until the reload ends;
- full fine-tuning still sends exactly the trainable tensors;
- a Qwen3-VL-MoE's fused expert tensors, which transformers transposes as it loads them, go out
  (weight sync to vLLM, `LearnerRank.save_hf`, export) exactly as the published checkpoint holds
  them, and the folder written reads back into transformers as the same weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vrft.learner.checkpoint_layout import to_checkpoint_layout
from vrft.learner.lora import apply_lora, plain_entries
from vrft.learner.model import load_model

ROOT = Path(__file__).resolve().parent.parent


def _names(model: torch.nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters()]


def test_lora_on_part_of_a_fused_block_sends_all_of_it(tiny_model):
    plain = _names(load_model(tiny_model, "float32"))
    model = apply_lora(load_model(tiny_model, "float32"), 4, 8.0, 0.0, ["q_proj", "v_proj"])
    sent = {e.name: e for e in plain_entries(model, changing_only=True)}
    attention = [n for n in plain if ".language_model." in n and ".self_attn." in n]
    assert any(n.endswith("k_proj.weight") for n in attention) and any(n.endswith(".bias") for n in attention)
    assert set(attention) <= set(sent)  # k_proj (no adapter) and every q/k/v bias go out too
    assert not any(".mlp." in n or ".visual." in n for n in sent)  # blocks with nothing training stay home

    base = dict(load_model(tiny_model, "float32").named_parameters())
    k = next(n for n in sent if n.endswith("k_proj.weight"))
    assert torch.equal(sent[k].value(), base[k].detach())  # as loaded: no adapter there
    q = next(n for n in sent if n.endswith("q_proj.weight"))
    assert sent[q].scaling is not None  # merged W + scaling * B @ A

    default = apply_lora(load_model(tiny_model, "float32"), 4, 8.0, 0.0, None)  # every linear
    sent = {e.name for e in plain_entries(default, changing_only=True)}
    assert {n for n in plain if ".language_model." in n and n.endswith(".bias")} <= sent


def test_full_fine_tuning_sends_exactly_the_trainable_tensors(tiny_model):
    model = load_model(tiny_model, "float32")
    assert [e.name for e in plain_entries(model, changing_only=True)] == _names(model)
    frozen = load_model(tiny_model, "float32", freeze_vision=True)
    trainable = [n for n, p in frozen.named_parameters() if p.requires_grad]
    assert len(trainable) < len(_names(frozen))
    assert [e.name for e in plain_entries(frozen, changing_only=True)] == trainable


# ---- Qwen3-VL-MoE: the checkpoint's layout ---------------------------------------------------
EXPERTS, HIDDEN, INTER = 4, 32, 24  # 2 x INTER != HIDDEN != INTER: every layout shows in the shapes


def _hub_checkpoint(folder: Path) -> dict[str, torch.Tensor]:
    """A random tiny Qwen3-VL-MoE folder laid out as the published checkpoints (and vLLM's loader):
    fused experts as [experts, hidden, 2 x intermediate] and [experts, intermediate, hidden]."""
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    text = dict(vocab_size=128, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=8, moe_intermediate_size=INTER,
                num_experts=EXPERTS, num_experts_per_tok=2, decoder_sparse_step=1,
                rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [1, 1, 2],
                                 "mrope_interleaved": True})
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                  patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16,
                  deepstack_visual_indexes=[0])
    config = Qwen3VLMoeConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = {n: p.detach().clone() for n, p in Qwen3VLMoeForConditionalGeneration(config).named_parameters()}
        for name in state:
            if name.endswith("mlp.experts.gate_up_proj"):
                state[name] = torch.randn(EXPERTS, HIDDEN, 2 * INTER)
            elif name.endswith("mlp.experts.down_proj"):
                state[name] = torch.randn(EXPERTS, INTER, HIDDEN)
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return state


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].shape == tensor.shape, name
        assert torch.equal(got[name].float(), tensor.float()), name


# A ZeRO-3 learner rank on the folder (a child process: a rank joins torch.distributed): its
# save_hf, and the named tensors a sync to a vLLM engine hands over (names renamed for vLLM).
CHILD = r"""
import sys, torch
from safetensors.torch import save_file
from vrft.learner.lora import plain_entries
from vrft.learner.transfer import EntrySource
from vrft.learner.worker import LearnerRank
from vrft.rollout.vllm_inputs import vllm_weight_prefixes

model, out = sys.argv[1], sys.argv[2]
rank = LearnerRank(0, 1, dict(world_size=1, zero_stage=3, beta=0.0, torch_threads=1, dtype="float32"))
info = rank.setup(*rank.address(), model, 1)
rank.save_hf(out + "/saved")
entries = plain_entries(rank.engine.module, changing_only=True, checkpoint=True)
source = EntrySource(entries, torch.float32, True, 0.01, vllm_weight_prefixes("qwen3_vl_moe", True))
sent = {name: tensor.clone() for name, tensor in source}
assert [tuple(m.shape) for m in source.metadata()] == [tuple(t.shape) for t in sent.values()]
save_file(sent, out + "/sent.safetensors")
"""


def test_qwen3_vl_moe_experts_leave_in_the_checkpoint_layout(tmp_path):
    hub = _hub_checkpoint(tmp_path / "hub")
    model = load_model(str(tmp_path / "hub"), "float32")
    loaded = {n: p.detach() for n, p in model.named_parameters()}
    gate_up = next(n for n in hub if n.endswith("experts.gate_up_proj"))
    # transformers transposed the fused experts as it loaded them: what has to be undone.
    assert loaded[gate_up].shape == (EXPERTS, 2 * INTER, HIDDEN)

    _assert_same({e.name: e.value() for e in plain_entries(model, changing_only=False, checkpoint=True)}, hub)
    _assert_same(to_checkpoint_layout("qwen3_vl_moe", loaded), hub)  # vrft export
    assert dict((e.name, e.shape) for e in plain_entries(model, False))[gate_up] == [EXPERTS, 2 * INTER, HIDDEN]

    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "hub"), str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    _assert_same(load_file(tmp_path / "sent.safetensors"), hub)  # Qwen3-VL's vLLM names are its own
    saved = tmp_path / "saved"
    files = json.loads((saved / "model.safetensors.index.json").read_text())["weight_map"].values() \
        if (saved / "model.safetensors.index.json").exists() else ["model.safetensors"]
    written = {k: v for f in set(files) for k, v in load_file(saved / f).items()}
    _assert_same(written, hub)
    reloaded = load_model(str(saved), "float32")
    _assert_same({n: p.detach() for n, p in reloaded.named_parameters()}, loaded)
