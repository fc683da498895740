"""Reason-RFT's two phases on a real local Ray cluster with the learner's heavy options together:
chain-of-thought SFT, then GRPO, both on a 2-rank DeepSpeed ZeRO-3 learner with LoRA adapters and
gradient checkpointing (plus PPO-clip over 2 iterations with real old log-probs, a k3 KL to the
adapter-disabled reference, an entropy bonus, truncated IS and token-budget micro-batches).

The weight sync must stay exact: in sync mode every GRPO step samples with the weights broadcast
after the previous step, so the learner's log-probs of the sampled tokens (before its update) must
equal the engine's within 1e-5 — the LoRA merge, the ZeRO-3 gather and the names all have to be
right for that.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vrft.learner.checkpointing import consolidated_state_dict, read_meta
from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.train.loop import train

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"
SYNC_TOLERANCE = 1e-5


def test_sft_then_grpo_with_zero3_lora_and_checkpointing(ray_cluster, tiny_model, color_data, tmp_path):
    cfg = load_config(CONFIG, [
        f"model.path={tiny_model}", f"data.path={color_data}",
        "run.steps=3", "run.save_every=0",
        "sft.steps=3", "sft.prompts_per_step=4", "sft.lr=1e-2", "sft.lr_schedule=constant",
        "learner.zero_stage=3", "learner.lora_rank=8", "learner.gradient_checkpointing=true",
        "learner.lr=1e-2", "learner.beta=0.04", "learner.policy_loss=ppo_clip", "learner.num_iterations=2",
        "learner.entropy_coef=0.001", "learner.is_correction=true", "learner.token_budget=400",
        "logging.wandb=false",
    ])
    train(cfg, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]

    # Phase 1: SFT ran its 3 steps on the assistant tokens and wrote a plain HF folder.
    sft = [r for r in records if "sft_step" in r]
    assert [r["sft_step"] for r in sft] == [1, 2, 3]
    assert all(r["sft/tokens"] > 0 and r["sft/loss"] > 0 for r in sft)
    assert sft[-1]["sft/loss"] < sft[0]["sft/loss"]  # lr 1e-2 on a 3-step repeat of few rows
    sft_weights = (tmp_path / "sft_model" / "model.safetensors")
    assert sft_weights.is_file()

    # Phase 2: GRPO from the SFT model, with exact weight sync at every step.
    steps = [r for r in records if "step" in r and "summary" not in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:
        assert r["learner/loss"] == r["learner/loss"]  # not NaN
        assert r["learner/grad_norm"] > 0
        assert "learner/entropy" in r and "learner/kl" in r and "learner/is/mismatch_kl" in r
        assert r["learner/is/logprob_diff_max"] < SYNC_TOLERANCE, r["learner/is/logprob_diff_max"]
    # The second iteration over a batch sees a moved policy: its ratio is not identically 1.
    assert any(abs(r["learner/ratio_mean"] - 1.0) > 1e-7 for r in steps)
    assert steps[-1]["learner/kl"] > 0  # the adapters moved the policy away from the reference
    assert steps[-1]["policy_version"] == 3.0

    # The final checkpoint is a LoRA one (adapters only trained), under ZeRO-3.
    learner_dir = tmp_path / "checkpoints" / "step_000003" / "learner"
    meta = read_meta(learner_dir)
    assert meta["lora"]["rank"] == 8 and meta["zero_stage"] == 3
    assert meta["model_path"] == str((tmp_path / "sft_model").resolve())
    state = consolidated_state_dict(learner_dir)
    lora_b = [v for k, v in state.items() if ".lora_B." in k]
    assert lora_b and any(float(v.abs().max()) > 0 for v in lora_b)  # B starts at 0: it trained
    assert all(torch.isfinite(v).all() for v in state.values())
