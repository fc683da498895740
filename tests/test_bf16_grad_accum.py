"""bf16 learner steps sum their micro-batches' gradients in fp32 (learner/ds_config.py), on real
DeepSpeed with its CPU accelerator: one rank per ZeRO stage, in a child process of its own (a rank
joins torch.distributed, which a test process must not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vrft.learner.config import LearnerConfig
from vrft.learner.ds_config import deepspeed_config

ROOT = Path(__file__).resolve().parent.parent

# One bf16 rank, two micro-batches: the dtype DeepSpeed reports for gradient accumulation, and the
# dtypes of the buffers its optimizer summed them into, read just before the optimizer step.
CHILD = r"""
import json, random, sys
import torch
from vrft.learner.batch import Sample
from vrft.learner.worker import LearnerRank

model, stage = sys.argv[1], int(sys.argv[2])
rank = LearnerRank(0, 1, dict(world_size=1, zero_stage=stage, lr=1e-2, beta=0.0, torch_threads=1,
                              dtype="bfloat16"))
rank.setup(*rank.address(), model, 4)
engine, seen = rank.engine, {}
step = rank._step

def spy(finite):
    opt = engine.optimizer
    buffers = []
    for attr in ("fp32_groups_gradients_flat", "averaged_gradients", "grad_partitions_flat_buffer"):
        value = getattr(opt, attr, None)
        value = list(value.values()) if isinstance(value, dict) else value
        value = value if isinstance(value, (list, tuple)) else [value]
        for v in value:
            buffers.extend(v if isinstance(v, (list, tuple)) else [v])
    seen["buffers"] = sorted({str(t.dtype) for t in buffers if torch.is_tensor(t)})
    return step(finite)

rank._step = spy
rng = random.Random(0)
samples = [Sample(prompt_ids=[rng.randrange(10, 300) for _ in range(6)],
                  completion_ids=[rng.randrange(10, 300) for _ in range(5)],
                  advantage=(-1.0) ** i, group_id=i // 2) for i in range(4)]
out = rank.train_step([samples[:2], samples[2:]], {"tokens": 20.0, "seqs": 4.0, "max_len": 5.0}, 0)
model_dtype, accum_dtype = engine.get_data_types()
print("RESULT " + json.dumps({"accum": str(accum_dtype), "model": str(model_dtype), **seen,
                              "optimizer": type(engine.optimizer).__name__, "skipped": out["skipped_nonfinite"],
                              "applied": engine.was_step_applied()}))
"""


@pytest.mark.parametrize("zero_stage", [1, 2, 3])
def test_bf16_step_accumulates_gradients_in_fp32(tiny_model, zero_stage):
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, tiny_model, str(zero_stage)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["model"] == "torch.bfloat16"
    assert result["accum"] == "torch.float32"  # DeepSpeed's own query (engine.get_data_types)
    assert result["buffers"] == ["torch.float32"], result  # where the micro-batches were summed
    assert result["skipped"] == 0.0 and result["applied"]
    assert "BF16 gradient accumulation is not safe" not in output


def test_fp32_accumulation_is_asked_only_where_deepspeed_takes_it():
    cfg = LearnerConfig()
    for stage in (1, 2, 3):
        assert deepspeed_config(cfg, True, stage)["data_types"] == {"grad_accum_dtype": "fp32"}
        assert "data_types" not in deepspeed_config(cfg, False, stage)  # fp32 runs: nothing to ask
    # Without ZeRO, DeepSpeed 0.19.8 raises NotImplementedError for bf16 with fp32 accumulation.
    assert "data_types" not in deepspeed_config(cfg, True, 0)


def test_bf16_without_zero_is_refused_at_load():
    """ZeRO-0 cannot accumulate in fp32 (above): a bf16 learner without ZeRO is refused in one line."""
    import pytest

    for bf16 in ({"dtype": "bfloat16"}, {"num_gpus_per_rank": 1}):  # auto is bf16 on a GPU
        with pytest.raises(ValueError, match="zero_stage=0 with bf16"):
            LearnerConfig(zero_stage=0, **bf16)
    LearnerConfig(zero_stage=0)  # fp32 on CPU: accumulates in fp32
    LearnerConfig(zero_stage=1, dtype="bfloat16")
