"""The learner's configuration (composed into the run config by the orchestrator)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LearnerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    world_size: int = Field(1, ge=1, description="DeepSpeed data-parallel ranks (Ray actors)")
    zero_stage: Literal[0, 1, 2, 3] = 2
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    lr: float = Field(1e-6, gt=0)  # TRL's default that Visual-RFT and Reason-RFT ran with
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = Field(1.0, gt=0)
    micro_batch_size: int = Field(4, ge=1, description="sequences per forward/backward")
    token_budget: int | None = Field(None, ge=1, description="max padded tokens per micro-batch")
    gradient_checkpointing: bool = False
    freeze_vision: bool = False
    offload_optimizer: bool = False
    offload_params: bool = False
    # The algorithm, by registered name (learner.algorithms). Defaults are Visual-RFT's loss.
    advantage: str = "grpo"
    advantage_options: dict = Field(default_factory=dict)
    policy_loss: str = "visual_rft"
    policy_loss_options: dict = Field(default_factory=dict)
    loss_agg: Literal["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"] = "seq-mean-token-mean"
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    beta: float = Field(0.04, ge=0, description="KL weight; 0 loads no reference model")
    entropy_coef: float = 0.0
    is_correction: bool = False  # truncated importance sampling between engine and learner log-probs
    is_cap: float = Field(2.0, gt=0)
    num_gpus_per_rank: float = Field(0.0, ge=0)
    num_cpus_per_rank: float = Field(1.0, ge=0)
    torch_threads: int | None = Field(None, ge=1, description="torch CPU threads per rank")
