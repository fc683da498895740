"""What a learner rank hands DeepSpeed: the engine's config (ZeRO stage, offload, clipping, bf16)
and the learning-rate schedule."""

from __future__ import annotations

import math

from vrft.learner.config import LearnerConfig


def deepspeed_config(cfg: LearnerConfig, bf16: bool, zero_stage: int, cuda: bool = False) -> dict:
    zero: dict = {"stage": zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if cfg.offload_optimizer and zero_stage > 0:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cuda}
    if cfg.offload_params and zero_stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": cuda}
    config = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        # Micro-batches vary in number per step (token budget): we call backward() per micro-batch
        # and step() once, which is DeepSpeed's unmanaged accumulation mode.
        "managed_gradient_accumulation": False,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        # A NaN/inf gradient norm skips the update (ZeRO 1-3 and bf16 check it; fp32 ZeRO-0 is
        # checked in LearnerRank._step).
        "bf16": {"enabled": bf16, "check_grad_overflow": True},
        "steps_per_print": 2**31,
        "wall_clock_breakdown": False,
    }
    if bf16 and zero_stage > 0:
        # Gradients summed over a step's micro-batches in fp32, not bf16 (DeepSpeed's default is the
        # model's dtype): ZeRO-1 takes DeepSpeed's BF16_Optimizer, ZeRO-2/3 keep fp32 gradient
        # partitions. DeepSpeed 0.19.8 refuses it without ZeRO (NotImplementedError): ZeRO-0 bf16
        # accumulates in bf16 (docs/gpu-recipe.md).
        config["data_types"] = {"grad_accum_dtype": "fp32"}
    if cfg.offload_optimizer and not cuda:
        # On a CPU-only machine the client torch AdamW already steps on the CPU.
        config["zero_force_ds_cpu_optimizer"] = False
    return config


def reference_ds_config(cfg: LearnerConfig, bf16: bool) -> dict:
    """ZeRO-3 inference engine for a separate reference model: partitioned like the policy."""
    zero: dict = {"stage": 3}
    if cfg.offload_params:
        zero["offload_param"] = {"device": "cpu"}
    return {"train_micro_batch_size_per_gpu": 1, "zero_optimization": zero, "bf16": {"enabled": bf16},
            "steps_per_print": 2**31}


def lr_lambda(cfg: LearnerConfig, total_steps: int):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        if cfg.lr_schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor
