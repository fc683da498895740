"""The rollout side's configuration (composed into the run config by the orchestrator)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vrft.rollout.tools import get_tools


class ToolsConfig(BaseModel):
    """Multi-turn rollouts with image tools (rollout/turns.py): the model may call a tool, read its
    observation (a new image, or text) and go on, until it answers or a budget ends the trajectory."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    names: list[str] = Field(min_length=1, description="tools the model may call: built in (zoom, rotate) "
                             "or a user's own 'package.module:attribute' holding a vrft.rollout.tools.Tool")
    max_turns: int = Field(4, ge=1, description="model turns per trajectory (a call in the last is not run)")
    max_total_tokens: int = Field(1024, ge=1, description="completion tokens over all turns, observations "
                                  "included; rollout.max_new_tokens bounds each turn")
    answer_frame: Literal["rel1000", "resized_pixels"] | None = Field(
        None, description="the frame the model's tool boxes are in; default: its family's")
    mask_cut_by_turns: bool = Field(False, description="over-turn masking (Mini-o3, arXiv 2509.07969): a "
                                    "trajectory the turn budget cut while it still called a tool adds no loss")

    @field_validator("names")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        get_tools(names)  # an unknown name or a user's module that fails is a one-line error at load
        return names


class RolloutConfig(BaseModel):
    """The rollout engines (Ray actors) and how they sample."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    engine: Literal["hf", "vllm"] = Field("hf", description="hf: transformers' generate (CPU or GPU); vllm: "
                                          "vLLM engines")
    num_workers: int = Field(1, ge=1, description="rollout actors, one engine each")
    n: int = Field(8, ge=1, description="completions per prompt (G)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")  # Visual-RFT samples at 1.0
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling (1: off)")
    top_k: int = Field(0, ge=0, description="sample among the k likeliest tokens (0: off)")
    max_new_tokens: int = Field(256, ge=1, description="longest completion in tokens (longer ones are cut)")
    max_batch_size: int = Field(64, ge=1, description="sequences per generate call")
    share_prefill: bool = Field(True, description="hf engine: each prompt (image included) is prefilled "
                                "once and its KV cache serves its n samples (rollout/decode.py; vLLM caches prefixes itself)")
    prompts_per_call: int = Field(2, ge=1, description="prompts per actor call: completions stream "
                                                         "to the verifiers call by call")
    placement: Literal["separate", "colocated"] = Field(
        "separate", description="separate: engines on their own GPUs; colocated: engine i shares "
                                "learner rank i's GPU and sleeps while the learner trains")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine (vLLM)")
    num_cpus_per_worker: float = Field(1.0, ge=0, description="Ray CPUs each rollout actor reserves")
    num_gpus_per_worker: float = Field(0.0, ge=0, description="Ray GPUs each rollout actor reserves")
    torch_threads: int | None = Field(None, ge=1, description="torch CPU threads per engine (None: torch's "
                                      "default)")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="engine weights' dtype; auto: "
                                                          "bf16 on GPU, fp32 on CPU")
    vllm: dict = Field(default_factory=dict, description="extra vLLM engine arguments")
    tools: ToolsConfig | None = Field(None, description="image tools and multi-turn rollouts; None: one turn")
    max_worker_restarts: int = Field(3, ge=0, description="rollout workers replaced after dying (the run "
                                     "continues, their calls re-dispatched); one more death stops the run")

    @model_validator(mode="after")
    def _engine_options(self) -> RolloutConfig:
        """An option of the other engine would be ignored silently: say so at load time."""
        if self.engine == "hf":
            if self.vllm:
                raise ValueError(f"rollout.vllm {sorted(self.vllm)} is set but rollout.engine is hf")
            if self.tensor_parallel_size != 1:
                raise ValueError("rollout.tensor_parallel_size > 1 needs rollout.engine=vllm")
        elif not self.share_prefill:
            raise ValueError("rollout.share_prefill is an hf engine option; vLLM's prefix caching is "
                             "rollout.vllm.enable_prefix_caching")
        return self
