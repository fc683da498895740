"""Qwen3-VL as the third model family: `vrft make-tiny-model --arch qwen3_vl` builds it offline, its
family is read from config.json (processor, chat template, box frame, vLLM names), and the loop,
export and weight-sync exactness tests of the Qwen2-VL tiny model pass on it unchanged (they are
called here with the Qwen3-VL folder in place of `tiny_model`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_export import test_export_loads_in_transformers_and_matches_learner as export_check
from test_loop import CONFIG, STEP_KEYS, read_records
from test_tiny_model import _prompts, generates_and_scores_batched
from test_weight_sync import test_broadcast_makes_workers_match_learner as sync_check
from transformers import AutoModelForImageTextToText

from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.core.frames import answer_frame, model_family
from vrft.rollout.families import family_of
from vrft.rollout.processor import QWEN3_VL_CHAT_TEMPLATE, load_processor
from vrft.rollout.vllm_inputs import weight_name_mapper

VRFT = Path(sys.executable).with_name("vrft")


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("q3") / "tiny"
    done = subprocess.run([str(VRFT), "make-tiny-model", str(out), "--arch", "qwen3_vl"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return str(out)


def test_family_from_config_json(qwen3):
    assert json.loads((Path(qwen3) / "config.json").read_text())["model_type"] == "qwen3_vl"
    family = family_of(qwen3)
    assert family.name == "qwen3_vl" and family.patch_size == 16
    assert answer_frame(model_family(qwen3)) == "rel1000"
    processor = load_processor(qwen3)
    assert processor.image_processor.patch_size == 16
    assert processor.chat_template == QWEN3_VL_CHAT_TEMPLATE  # no default system turn
    assert json.loads((Path(qwen3) / "processor_config.json").read_text())["processor_class"] == "Qwen3VLProcessor"
    # Qwen3-VL checkpoints already use transformers' names: vLLM takes them as they are.
    to_vllm = weight_name_mapper("qwen3_vl", is_vlm=True)
    for name in ("model.language_model.layers.0.mlp.up_proj.weight", "model.visual.blocks.0.attn.qkv.weight",
                 "lm_head.weight"):
        assert to_vllm(name) == name
    assert weight_name_mapper("qwen2_vl", is_vlm=True)("model.visual.merger.mlp.0.bias") == "visual.merger.mlp.0.bias"


def test_generates_and_scores(qwen3):
    model = AutoModelForImageTextToText.from_pretrained(qwen3).eval()
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    processor = load_processor(qwen3)
    prompts = _prompts(processor)
    assert all(p.image_grid_thw is not None and p.mm_token_type_ids for p in prompts)
    generates_and_scores_batched(model, processor, prompts)


def test_weight_sync_is_exact(ray_cluster, qwen3, color_data):
    sync_check(ray_cluster, qwen3, color_data, 2)


def test_export_matches_learner(ray_cluster, qwen3, color_data, tmp_path):
    export_check(ray_cluster, qwen3, color_data, tmp_path, 2, 0, False)


def test_loop_two_steps(ray_cluster, qwen3, color_data, tmp_path):
    from vrft.orchestrator.train.loop import train

    cfg = load_config(CONFIG, [f"model.path={qwen3}", f"data.path={color_data}", "run.steps=2",
                               "run.save_every=1", "logging.wandb=false"])
    train(cfg, tmp_path)
    steps = [r for r in read_records(tmp_path) if "step" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        assert STEP_KEYS <= record.keys(), STEP_KEYS - record.keys()
        assert record["learner/loss"] == record["learner/loss"] and record["rollout/tokens"] > 0
    assert [r["policy_version"] for r in steps] == [1.0, 2.0]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_000002"
