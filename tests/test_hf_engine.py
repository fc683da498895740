"""The transformers engine samples with exactly the run's sampling settings, whatever the model's own
generation_config says (Qwen2-VL-Instruct ships top_k 1, top_p 0.001, temperature 0.01 and a
repetition penalty: inherited, they would make every sample of a group the same)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vrft.rollout.engine import SamplingParams
from vrft.rollout.hf_engine import TransformersEngine
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor
from vrft.testing.synthetic import sample_task


def test_model_generation_defaults_do_not_leak_into_sampling(tiny_model, tmp_path):
    import random

    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    config = json.loads((model / "generation_config.json").read_text())
    config.update(top_k=1, top_p=0.001, temperature=0.01, repetition_penalty=10.0, no_repeat_ngram_size=1,
                  do_sample=True)
    (model / "generation_config.json").write_text(json.dumps(config))
    engine = TransformersEngine(str(model))
    sample = sample_task("color", random.Random(0))
    prompt = build_prompt_inputs(load_processor(str(model), None, None), sample.problem, [sample.image])
    group = engine.generate([prompt], SamplingParams(n=8, temperature=1.0, max_new_tokens=12, seed=3))[0]
    assert len({tuple(c.token_ids) for c in group}) > 4  # top_k 1 from the model would give one answer
    greedy = engine.generate([prompt], SamplingParams(n=2, temperature=0.0, max_new_tokens=64))[0]
    assert greedy[0].token_ids == greedy[1].token_ids  # temperature 0: greedy, deterministic
    # Greedy means the argmax of the model's own logits at every step: no penalty from the model's
    # config may reorder them (a repetition penalty of 10 and no_repeat_ngram_size 1 would).
    import torch

    ids = greedy[0].token_ids
    batch = engine._collate([prompt], 1)
    full = torch.cat([batch["input_ids"], torch.tensor([ids])], dim=1)
    inputs = {**batch, "input_ids": full, "attention_mask": torch.ones_like(full)}
    if "mm_token_type_ids" in batch:
        inputs["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros(1, len(ids), dtype=torch.long)], 1)
    with torch.no_grad():
        logits = engine.model(**inputs).logits[0, -len(ids) - 1:-1]
    assert logits.argmax(-1).tolist() == ids
