"""`LearnerRank`: one DeepSpeed data-parallel rank as a Ray actor (policy, reference, optimizer).

All ranks are driven together by `LearnerGroup`; every method that runs a collective (train_step,
broadcast_weights under ZeRO-3, save, load) must be called on all ranks at once.
"""

from __future__ import annotations

import math
import os
import socket
import warnings

import ray
import torch

from learner.batch import Sample, collate
from learner.config import LearnerConfig
from learner.model import load_model, sequence_logprobs
from learner.objective import grpo_objective, sft_objective
from learner.weight_sync import iter_buckets, join_group, make_plan, send_buckets


def deepspeed_config(cfg: LearnerConfig, bf16: bool, zero_stage: int) -> dict:
    zero: dict = {"stage": zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if cfg.offload_optimizer and zero_stage > 0:
        zero["offload_optimizer"] = {"device": "cpu"}
    if cfg.offload_params and zero_stage == 3:
        zero["offload_param"] = {"device": "cpu"}
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        # Micro-batches vary in number per step (token budget): we call backward() per micro-batch
        # and step() once, which is DeepSpeed's unmanaged accumulation mode.
        "managed_gradient_accumulation": False,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "steps_per_print": 2**31,
        "wall_clock_breakdown": False,
    }


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


@ray.remote
class LearnerRank:
    def __init__(self, rank: int, world_size: int, cfg: dict):
        self.cfg = LearnerConfig.model_validate(cfg)
        self.rank, self.world_size = rank, world_size
        if self.cfg.torch_threads:
            torch.set_num_threads(self.cfg.torch_threads)
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda", 0) if self.cuda else torch.device("cpu")
        self.sync_group = None
        self.version = 0

    def setup(self, master_addr: str, master_port: int, model_path: str, total_steps: int,
              trust_remote_code: bool = False) -> None:
        """Join DeepSpeed's group (all ranks at once) and build policy, optimizer and reference."""
        rank, world_size = self.rank, self.world_size
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0",
                          MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
        if not self.cuda:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        import deepspeed  # after the environment: DeepSpeed picks its accelerator at import

        # DeepSpeed calls torch.distributed APIs that torch marks deprecated, once per step.
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")

        deepspeed.init_distributed(dist_backend="nccl" if self.cuda else "gloo")
        bf16 = self.cfg.dtype == "bfloat16" or (self.cfg.dtype == "auto" and self.cuda)
        # DeepSpeed keeps fp32 master weights itself when bf16 is on: load the model in fp32.
        model = load_model(model_path, "float32", trust_remote_code, self.cfg.gradient_checkpointing,
                           self.cfg.freeze_vision)
        self.param_names = [n for n, _ in model.named_parameters()]
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.cfg.lr, betas=self.cfg.betas,
                                      weight_decay=self.cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.cfg, total_steps))
        self.ds_config = deepspeed_config(self.cfg, bf16, self.cfg.zero_stage)
        self.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                                    lr_scheduler=scheduler, config=self.ds_config)
        self.zero3 = self.cfg.zero_stage == 3
        self.ref = None
        if self.cfg.beta > 0:
            ref = load_model(model_path, "bfloat16" if bf16 else "float32", trust_remote_code)
            ref.requires_grad_(False)
            self.ref = ref.to(self.device).eval()
        self.compute_dtype = torch.bfloat16 if bf16 else torch.float32

    # ---- set-up helpers -------------------------------------------------------------------
    def address(self) -> tuple[str, int]:
        """This node's IP and a free port, for rendezvous (torch's and weight sync's)."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def sync_plan(self, bucket_mb: float) -> list[dict]:
        named = list(self.engine.module.named_parameters())
        return make_plan(named, self.compute_dtype, bucket_mb)

    def join_weight_sync(self, master_addr: str, port: int, world_size: int, backend: str) -> None:
        assert self.rank == 0, "only learner rank 0 joins the weight-sync group"
        self.sync_group = join_group(master_addr, port, 0, world_size, backend)

    # ---- training -------------------------------------------------------------------------
    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {k: v.to(self.device) for k, v in batch.items()}
        if "pixel_values" in out:
            out["pixel_values"] = out["pixel_values"].to(self.compute_dtype)
        return out

    def train_step(self, micro_batches: list[list[Sample]], norms: dict[str, float], pad_id: int,
                   mode: str = "grpo", temperature: float = 1.0) -> dict[str, float]:
        """One optimizer step over this rank's micro-batches (same count on every rank)."""
        self.engine.train()
        sums: dict[str, float] = {}
        tokens_seen = 0.0
        for micro in micro_batches:
            batch = self._to_device(collate(micro, pad_id))
            logp = sequence_logprobs(self.engine, batch, temperature)
            if mode == "sft":
                loss, stats = sft_objective(logp, batch, norms)
            else:
                ref_logp = None
                if self.ref is not None:
                    with torch.no_grad():
                        ref_logp = sequence_logprobs(self.ref, batch, temperature)
                loss, stats = grpo_objective(logp, ref_logp, batch, self.cfg, norms)
            # DeepSpeed averages gradients over ranks; contributions are normalised batch-wide,
            # so the sum over ranks is the loss: undo the average.
            self.engine.backward(loss * self.world_size)
            n_tok = float((batch["loss_mask"] * batch["weights"][:, None]).sum())
            tokens_seen += n_tok
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value * n_tok
        self.engine.step()
        out = {k: (v if k == "loss" else v / max(tokens_seen, 1.0)) for k, v in sums.items()}
        out["tokens"] = tokens_seen
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is not None:
            out["grad_norm"] = float(grad_norm)
        out["lr"] = float(self.engine.get_lr()[0])
        return out

    @torch.no_grad()
    def logprobs(self, samples: list[Sample], pad_id: int, temperature: float = 1.0) -> list[list[float]]:
        """The policy's per-token log-probs of each sample's completion (collective under ZeRO-3)."""
        self.engine.eval()
        batch = self._to_device(collate(samples, pad_id))
        logp = sequence_logprobs(self.engine, batch, temperature).float().cpu()
        mask = batch["loss_mask"].cpu().bool()
        return [logp[i][mask[i]].tolist() for i in range(len(samples))]

    # ---- weight sync ----------------------------------------------------------------------
    def broadcast_weights(self, plan: list[dict], version: int) -> int:
        """Send every bucket to the rollout workers (rank 0); other ranks help gather under ZeRO-3."""
        named = list(self.engine.module.named_parameters())
        buckets = iter_buckets(named, plan, self.zero3)
        self.version = version
        if self.rank == 0:
            return send_buckets(self.sync_group, buckets, self.device)
        for _ in buckets:  # ZeRO-3: the gather is collective, so every rank walks the buckets
            pass
        return 0

    # ---- checkpoints ----------------------------------------------------------------------
    def save(self, path: str, tag: str) -> None:
        self.engine.save_checkpoint(path, tag=tag, client_state={"version": self.version})

    def load(self, path: str, tag: str) -> int:
        _, client = self.engine.load_checkpoint(path, tag=tag, load_module_strict=True)
        self.version = int((client or {}).get("version", 0))
        return self.version

    def save_hf(self, path: str) -> None:
        """A Hugging Face folder (safetensors); collective under ZeRO-3, written by rank 0."""
        import deepspeed

        module = self.engine.module
        params = list(module.parameters())
        ctx = deepspeed.zero.GatheredParameters(params, modifier_rank=None) if self.zero3 else None
        if ctx is not None:
            ctx.__enter__()
        try:
            if self.rank == 0:
                module.save_pretrained(path, safe_serialization=True)
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
