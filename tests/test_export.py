"""`vrft export`: a run checkpoint of a trained learner becomes a Hugging Face folder that
`AutoModelForImageTextToText.from_pretrained` loads, and that model scores fixed sequences exactly
as the learner does (per-token log-probs equal within EXPORT_TOLERANCE).

Two 2-rank learners, trained for two steps and saved through the orchestrator's atomic checkpoint
writer: ZeRO-3 with LoRA adapters, the hardest case (the checkpoint holds partitioned fp32 shards
under peft names; export must merge the ranks' shards, fold the adapters in and rename), and ZeRO-2
full fine-tuning (every weight changes; the fp32 master copy comes from the optimizer partitions).
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vrft.learner import LearnerConfig, LearnerGroup, Sample, TrainBatch
from vrft.learner.batch import collate
from vrft.learner.model import sequence_logprobs
from vrft.orchestrator.data.sources import decode_image, load_task_dataset
from vrft.orchestrator.train.checkpoint import write_checkpoint
from vrft.orchestrator.train.export import export_checkpoint
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor, vision_special_token_ids

EXPORT_TOLERANCE = 1e-5  # max |Δ log p| per token, fp32 on both sides
VRFT = Path(sys.executable).with_name("vrft")


def _samples(model_path: str, data_path: str, n: int, seed: int) -> list[Sample]:
    """Prompts from the synthetic data with random completions of 3..12 tokens (no rollout needed:
    the test is about scoring, and random tokens exercise every row of the output layer)."""
    processor = load_processor(model_path)
    rows = [r for r in load_task_dataset(data_path) if decode_image(r["image"]) is not None]
    tokenizer = processor.tokenizer
    special = set(tokenizer.all_special_ids) | set(vision_special_token_ids(tokenizer))
    vocab = [i for i in range(tokenizer.vocab_size) if i not in special]  # no image placeholders
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        row = rows[i % len(rows)]
        prompt = build_prompt_inputs(processor, row["problem"], [decode_image(row["image"])])
        completion = rng.choices(vocab, k=rng.randint(3, 12))
        samples.append(Sample(prompt_ids=prompt.input_ids, completion_ids=completion,
                              reward=float(i % 2), group_id=i // 2, pixel_values=prompt.pixel_values,
                              image_grid_thw=prompt.image_grid_thw,
                              prompt_mm_token_type_ids=prompt.mm_token_type_ids))
    return samples


@pytest.mark.parametrize("zero_stage,lora_rank,via_cli", [(3, 8, True), (2, 0, False)],
                         ids=["zero3-lora-cli", "zero2-full"])
def test_export_loads_in_transformers_and_matches_learner(ray_cluster, tiny_model, color_data, tmp_path,
                                                          zero_stage, lora_rank, via_cli):
    from transformers import AutoModelForImageTextToText

    pad_id = load_processor(tiny_model).tokenizer.pad_token_id
    train = _samples(tiny_model, color_data, 8, seed=0)
    fixed = _samples(tiny_model, color_data, 3, seed=1)
    cfg = LearnerConfig(world_size=2, zero_stage=zero_stage, lora_rank=lora_rank, lr=1e-2, beta=0.0, micro_batch_size=4,
                        torch_threads=1)
    group = LearnerGroup(tiny_model, cfg, total_steps=2, pad_id=pad_id)
    try:
        before = group.logprobs(fixed)
        for _ in range(2):
            group.train_step(TrainBatch(train))
        expected = group.logprobs(fixed)
        # The adapters trained: exporting the base model unchanged would not pass.
        assert max(abs(a - b) for x, y in zip(before, expected, strict=True) for a, b in zip(x, y, strict=True)) > 1e-3
        run_dir = tmp_path / "run"
        ckpt = write_checkpoint(run_dir, 2, {"step": 2}, lambda path: group.save(path, "state"))
    finally:
        group.shutdown()

    out = tmp_path / "exported"
    if via_cli:
        done = subprocess.run([str(VRFT), "export", str(ckpt), str(out)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    else:  # the function behind the command, in-process (saves a subprocess's ten seconds of imports)
        export_checkpoint(ckpt, out)
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    assert (out / "tokenizer_config.json").is_file()  # the processor files travel with the weights

    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32).eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        batch = collate(fixed, pad_id)
        logp = sequence_logprobs(model, batch)[0]
    mask = batch["loss_mask"].bool()
    got = [logp[i][mask[i]].tolist() for i in range(len(fixed))]
    for g, e in zip(got, expected, strict=True):
        assert len(g) == len(e)
        diff = max(abs(a - b) for a, b in zip(g, e, strict=True))
        assert diff < EXPORT_TOLERANCE, diff


def test_export_rejects_a_folder_that_is_not_a_checkpoint(tmp_path):
    done = subprocess.run([str(VRFT), "export", str(tmp_path), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vrft: error:"), done.stderr
    assert not (tmp_path / "out").exists()
