"""The learner's configuration (composed into the run config by the orchestrator)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    ValidationInfo,
    field_validator,
    model_validator,
)


def _check_options(kind: str, fn, options: dict) -> None:
    """Options a registered function takes (its keyword-only parameters), tried on a one-token
    batch: an unknown option or a bad value fails at config load, not after every actor started."""
    import inspect

    import torch

    known = [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"{kind} takes no option {unknown[0]!r} (its options: {', '.join(known) or 'none'})")
    try:
        if kind.startswith("advantage"):
            fn(torch.tensor([0.0, 1.0]), torch.tensor([0, 0]), **options)
        else:
            zero = torch.zeros(1, 1)
            fn(zero, zero, torch.zeros(1), torch.ones(1, 1, dtype=torch.bool), **options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{kind} options {options}: {str(err).splitlines()[0]}") from None


class LearnerConfig(BaseModel):
    """The DeepSpeed learner: optimisation, the GRPO loss and its pieces, placement."""
    # Non-finite numbers (lr=.inf) are refused: they would only fail, or silently diverge, mid-run.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    world_size: int = Field(1, ge=1, description="DeepSpeed data-parallel ranks (Ray actors)")
    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage (3 shards the parameters too)")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="training dtype; auto: bf16 on "
                                                          "GPU, fp32 on CPU")
    # TRL's default that Visual-RFT and Reason-RFT ran with
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field("constant", description="learning-rate "
                                                                 "schedule after the warm-up")
    warmup_steps: int = Field(0, ge=0, description="steps of linear learning-rate warm-up")
    weight_decay: float = Field(0.0, description="AdamW weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    grad_clip: float = Field(1.0, gt=0, description="gradient-norm clip")
    micro_batch_size: int = Field(4, ge=1, description="sequences per forward/backward")
    token_budget: int | None = Field(None, ge=1, description="max padded tokens per micro-batch; "
                                     "samples are sorted by length first (None: micro_batch_size only)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass "
                                         "(less memory, more time)")
    share_prompts: bool = Field(True, description="run each prompt (and its images) once for the completions "
                                "that share it, not once per completion (learner/shared_prompt.py); off under "
                                "gradient_checkpointing, which keeps no KV cache")
    freeze_vision: bool = Field(False, description="train the language model only (the vision tower frozen)")
    offload_optimizer: bool = Field(False, description="ZeRO-Offload: optimizer states (and step) on the CPU")
    offload_params: bool = Field(False, description="ZeRO-3 only: parameters live on the CPU between uses")

    # LoRA through peft (0: full fine-tuning). The vision tower never gets adapters (as EasyR1).
    lora_rank: int = Field(0, ge=0, description="LoRA rank (0: full fine-tuning)")
    lora_alpha: float | None = Field(None, gt=0, description="None: 2 x lora_rank")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input")
    lora_target_modules: list[str] | None = Field(
        None, description="module name suffixes; None: every linear layer of the language model")

    # The algorithm, by registered name (vrft.learner.algorithms). Defaults are Visual-RFT's loss.
    advantage: str = Field("grpo", description="advantage estimator, by registered name")
    advantage_options: dict = Field(default_factory=dict, description="the advantage estimator's keyword options")
    policy_loss: str = Field("visual_rft", description="policy loss, by registered name")
    policy_loss_options: dict = Field(default_factory=dict, description="the policy loss's keyword options")
    loss_agg: Literal["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"] = Field(
        "seq-mean-token-mean", description="how per-token losses become the batch's loss")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k3", description="estimator of the KL to the reference "
                                                    "model (k1, k2 or k3)")
    beta: float = Field(0.04, ge=0, description="KL weight; 0 loads no reference model")
    kl_in_reward: bool = Field(False, description="subtract beta * sum_t KL_t from each sample's reward "
                               "and recompute the advantages (veRL use_kl_in_reward), instead of "
                               "adding beta * KL_t to the per-token loss")
    entropy_coef: float = Field(0.0, ge=0, description="entropy bonus: loss -= coef * H_t")
    num_iterations: int = Field(1, ge=1, description="optimizer steps per rollout batch (GRPO's mu); "
                                "> 1 computes the old log-probs before the first update")
    logprob_temperature: float | None = Field(
        None, gt=0, description="the temperature the learner's log-probs divide the logits by; None: the "
        "sampling temperature (as the engines' log-probs). 1.0: Reason-RFT's trainer (TRL 0.15), which "
        "samples at 0.9 but scores raw logits")
    is_correction: bool = Field(False, description="truncated importance sampling between the engine's "
                                "and the learner's log-probs")
    is_cap: float = Field(2.0, gt=0, description="is_correction: the ratio's cap")
    banned_token_ids: list[NonNegativeInt] = Field(
        default_factory=list, description="token ids the rollout engines never sample: the learner's "
        "log-probs and entropies normalise over the rest of the vocabulary, as the engines' do. Set by "
        "the orchestrator from the model's tokenizer (vrft.rollout.processor.banned_token_ids), not by hand")

    # DAPO (Yu et al. 2025): the learner's part. Dynamic sampling and the overlong penalty shape the
    # batch, so they live in the orchestrator's `dapo:` section.
    mask_truncated: bool = Field(False, description="completions cut by max_new_tokens carry no gradient")

    # A NaN/inf loss or gradient norm skips that update (metric skipped_nonfinite); this many in a
    # row means training has diverged: the learner raises and the run stops.
    max_nonfinite_in_row: int = Field(3, ge=1, description="updates in a row skipped for a non-finite loss "
                                      "or gradient before the run stops")
    # How long a rank waits in a DeepSpeed collective for the others (DeepSpeed's default_pg_timeout
    # is 30 min). It bounds a hang where no rank dies (a lost rank is seen by Ray at once); it must
    # exceed the slowest gap between collectives: one micro-batch, or rank 0 writing a checkpoint.
    collective_timeout_s: float = Field(600.0, gt=0, description="how long a rank waits in a DeepSpeed "
                                        "collective for the others before the step fails (a hang where no rank died)")

    num_gpus_per_rank: float = Field(0.0, ge=0, description="Ray GPUs each learner rank reserves")
    num_cpus_per_rank: float = Field(1.0, ge=0, description="Ray CPUs each learner rank reserves")
    torch_threads: int | None = Field(None, ge=1, description="torch CPU threads per rank")

    @field_validator("advantage", "policy_loss")
    @classmethod
    def _registered(cls, name: str, info: ValidationInfo) -> str:
        from vrft.learner.algorithms import get_advantage, get_policy_loss

        (get_advantage if info.field_name == "advantage" else get_policy_loss)(name)  # unknown: ValueError
        return name

    @field_validator("advantage_options", "policy_loss_options")
    @classmethod
    def _options(cls, options: dict, info: ValidationInfo) -> dict:
        from vrft.learner.algorithms import get_advantage, get_policy_loss

        kind = info.field_name.removesuffix("_options")
        name = info.data.get(kind)
        if name is not None:  # else the name itself failed and is reported
            fn = (get_advantage if kind == "advantage" else get_policy_loss)(name)
            _check_options(f"{kind} {name}", fn, options)
        return options

    @model_validator(mode="after")
    def _check(self) -> LearnerConfig:
        bf16 = self.dtype == "bfloat16" or (self.dtype == "auto" and self.num_gpus_per_rank > 0)
        if bf16 and self.zero_stage == 0:
            # DeepSpeed sums ZeRO-0's gradients in the model's dtype (it has no fp32 accumulation
            # without ZeRO): over many micro-batches bf16 sums lose the small ones.
            raise ValueError("learner.zero_stage=0 with bf16 would accumulate gradients in bf16 (DeepSpeed has no "
                             "fp32 accumulation without ZeRO); use learner.zero_stage 1, 2 or 3")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage >= 1")
        return self

    @property
    def lora_scaling(self) -> float:
        """peft's scaling of B @ A: alpha / rank."""
        return (self.lora_alpha or 2.0 * self.lora_rank) / self.lora_rank if self.lora_rank else 0.0

    @property
    def uses_reference(self) -> bool:
        """β = 0 loads no reference model at all (and computes no reference log-probs)."""
        return self.beta > 0
