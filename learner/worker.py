"""`LearnerRank`: one DeepSpeed data-parallel rank (policy, reference, optimizer).

A plain class: `LearnerGroup` runs each rank as a Ray actor (`ray.remote(LearnerRank)`), and the GPU
check (benchmarks/gpu_check.py) runs one in a plain process where Ray is not installed.

All ranks are driven together by `LearnerGroup`; every method that runs a collective (prepare,
train_step, logprobs and send_weights under ZeRO-3, save, load, save_hf) must be called on
all ranks at once, with the same number of micro-batches on each.
"""

from __future__ import annotations

import ipaddress
import math
import os
import shutil
import socket
import warnings
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from vrft.learner.batch import Sample, collate
from vrft.learner.checkpointing import load_rng, save_rng, weights_only_loads, write_hf_folder, write_meta
from vrft.learner.config import LearnerConfig
from vrft.learner.ds_config import deepspeed_config, lr_lambda, reference_ds_config
from vrft.learner.gpu import release_cached_memory, strict_fp32
from vrft.learner.lora import is_peft, plain_entries
from vrft.learner.model import load_model, load_policy, sequence_logprobs
from vrft.learner.objective import grpo_objective, sequence_kl, sft_objective
from vrft.learner.shared_prompt import agrees, shared_prompt_logprobs, worth_sharing
from vrft.learner.transfer import BucketTransfer, EntrySource, VLLMTransfer
from vrft.learner.weight_sync import iter_tensors, loopback_interface

ADAPTERS_OFF = "adapters-off"  # the reference is the LoRA policy with its adapters disabled


def average_iterations(results: list[dict[str, float]]) -> dict[str, float]:
    """Metrics of a step with several optimizer updates: means, maxima for `*_max`, the last lr,
    the count of skipped updates."""
    out: dict[str, float] = {}
    for key in results[0]:
        values = [r[key] for r in results if key in r]
        out[key] = (max(values) if key.endswith("_max") else values[-1] if key == "lr"
                    else sum(values) if key == "skipped_nonfinite" else sum(values) / len(values))
    return out


def _node_ip() -> str:
    """The IP Ray gives this node (127.0.0.1 in local mode); without Ray (the GPU check's plain
    process), the loopback address."""
    try:
        import ray
    except ImportError:
        return "127.0.0.1"
    return ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class LearnerRank:
    def __init__(self, rank: int, world_size: int, cfg: dict):
        self.cfg = LearnerConfig.model_validate(cfg)
        self.rank, self.world_size = rank, world_size
        if self.cfg.torch_threads:
            torch.set_num_threads(self.cfg.torch_threads)
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda", 0) if self.cuda else torch.device("cpu")
        self.transfer: BucketTransfer | VLLMTransfer | None = None  # weight sync (learner/transfer.py)
        self.version = 0
        self._listeners: dict[int, socket.socket] = {}  # port -> reserved socket (address())
        self._nonfinite_in_row = 0
        self._grad_norm: float | None = None  # ZeRO-0's, which DeepSpeed does not keep (_step)
        # Shared prompts: on until the first real batch shows the two paths disagree (_logprobs).
        self.share_prompts: bool | None = None if self.cfg.share_prompts and not self.cfg.gradient_checkpointing \
            else False
        self._micro: list[dict[str, torch.Tensor]] = []
        self._old: list[torch.Tensor | None] = []
        self._ref: list[torch.Tensor | None] = []

    def setup(self, master_addr: str, master_port: int, model_path: str, total_steps: int,
              trust_remote_code: bool = False) -> dict:
        """Join DeepSpeed's group (all ranks at once) and build policy, optimizer and reference."""
        rank, world_size = self.rank, self.world_size
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0",
                          MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
        if not self.cuda:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        if _is_loopback(master_addr):  # every rank is on this machine: gloo's pair sockets too
            os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback_interface())
        import deepspeed  # after the environment: DeepSpeed picks its accelerator at import

        # Bounded (learner.collective_timeout_s): a rank waits this long for a peer that hangs;
        # a peer that dies is seen by Ray and the orchestrator stops the run at once.
        pg_timeout = timedelta(seconds=self.cfg.collective_timeout_s)
        # DeepSpeed calls torch.distributed APIs that torch marks deprecated, once per step.
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")

        # Our own store (on the socket address() reserved), which DeepSpeed then adopts: its env://
        # rendezvous would listen on every interface.
        backend = "nccl" if self.cuda else "gloo"
        store = self._store(master_addr, master_port, pg_timeout)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=pg_timeout)
        deepspeed.init_distributed(dist_backend=backend, timeout=pg_timeout)
        self.model_path, self.trust_remote_code = model_path, trust_remote_code
        bf16 = self.cfg.dtype == "bfloat16" or (self.cfg.dtype == "auto" and self.cuda)
        model = load_policy(model_path, self.cfg, trust_remote_code)
        trainable = [p for p in model.parameters() if p.requires_grad]
        info = {"trainable_params": sum(p.numel() for p in trainable),
                "total_params": sum(p.numel() for p in model.parameters()), "pid": os.getpid(),
                "model_type": model.config.model_type, "is_vlm": hasattr(model.config, "vision_config")}
        if self.cfg.offload_optimizer and self.cuda:
            from deepspeed.ops.adam import DeepSpeedCPUAdam  # torch's AdamW would step on the CPU slowly

            optimizer = DeepSpeedCPUAdam(trainable, lr=self.cfg.lr, betas=self.cfg.betas,
                                         weight_decay=self.cfg.weight_decay, adamw_mode=True)
        else:
            # fused: one kernel over all tensors instead of a dozen elementwise passes (CPU and GPU);
            # 5.4 ms against 26 ms per step for 12M parameters on 2 cores (make bench BENCH=optimizer).
            optimizer = torch.optim.AdamW(trainable, lr=self.cfg.lr, betas=self.cfg.betas,
                                          weight_decay=self.cfg.weight_decay, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.cfg, total_steps))
        self.zero3 = self.cfg.zero_stage == 3
        if self.zero3:  # ZeRO-3 gathers weights per forward: every rank must run the same forwards
            self.share_prompts = False
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler,
            config=deepspeed_config(self.cfg, bf16, self.cfg.zero_stage, self.cuda))
        self.compute_dtype = torch.bfloat16 if bf16 else torch.float32
        if self.cuda and not bf16:
            strict_fp32()  # no TF32 in an fp32 learner's matmuls and convolutions
        self.ref = self._build_reference(model_path, trust_remote_code, bf16)
        info["reference"] = ("none" if self.ref is None else
                             ADAPTERS_OFF if isinstance(self.ref, str) else "copy")
        return info

    def _build_reference(self, model_path: str, trust_remote_code: bool, bf16: bool):
        if not self.cfg.uses_reference:
            return None  # β = 0: no second model, no reference forward passes
        if self.cfg.lora_rank:
            return ADAPTERS_OFF  # the frozen base *is* the reference: no second copy
        ref = load_model(model_path, "bfloat16" if bf16 else "float32", trust_remote_code).eval()
        ref.requires_grad_(False)
        if self.zero3:
            import deepspeed

            engine, _, _, _ = deepspeed.initialize(model=ref, config=reference_ds_config(self.cfg, bf16))
            engine.eval()  # DeepSpeedEngine.eval() returns None, unlike Module.eval()
            return engine
        return ref.to(self.device)

    # ---- set-up helpers -------------------------------------------------------------------
    def address(self) -> tuple[str, int]:
        """This node's IP and a port for a rendezvous this rank hosts (torch's or weight sync's).
        The socket stays open, bound to the node's IP only (127.0.0.1 in local mode), and becomes
        the TCPStore's listener: a store that binds its own port listens on every interface."""
        ip = _node_ip()
        listener = socket.create_server((ip, 0), family=socket.AF_INET6 if ":" in ip else socket.AF_INET)
        port = listener.getsockname()[1]
        self._listeners[port] = listener
        return ip, port

    def _store(self, addr: str, port: int, timeout: timedelta) -> dist.TCPStore:
        listener = self._listeners.pop(port, None) if self.rank == 0 else None
        # detach(): the store owns the descriptor from here on (Python must not close it).
        extra = {"master_listen_fd": listener.detach()} if listener is not None else {}
        return dist.TCPStore(addr, port, self.world_size, is_master=self.rank == 0, timeout=timeout,
                             wait_for_workers=False, **extra)

    def init_weight_transfer(self, backend: str, client, options: dict) -> None:
        """Join a new weight transfer (all ranks at once; a re-formed one replaces the old). Rank 0
        drives `client` (the rollout side's four calls). `options`: `engine` ("hf" or "vllm"),
        `bucket_mb`, `timeout_s`, `rename` (prefix pairs for the receiver's names), and for
        gloo/nccl `endpoint` (rank 0's address(), reserved for the rendezvous) and `world_size`."""
        self.shutdown_weight_transfer()
        keep = self.rank == 0 or backend == "ipc"  # IPC: every colocated rank exports its copy
        # vLLM loads what it receives as a checkpoint: names (`rename`) and layout as the model's.
        entries = plain_entries(self.engine.module, changing_only=True, checkpoint=options["engine"] == "vllm")
        source = EntrySource(entries, self.compute_dtype, self.zero3, options["bucket_mb"], options.get("rename"),
                             keep=keep)
        endpoint = tuple(options["endpoint"]) if options.get("endpoint") else None
        listener = self._listeners.pop(endpoint[1], None) if endpoint and self.rank == 0 else None
        if options["engine"] == "vllm" and backend in ("nccl", "ipc"):
            if listener is not None:
                listener.close()  # vLLM's rendezvous binds the port itself
            self.transfer = VLLMTransfer(backend, self.rank, client, source, endpoint,
                                         options.get("world_size", 0), options["bucket_mb"])
            return
        self.transfer = BucketTransfer.trainer_init(
            backend, self.rank, client, source, self.device, options["timeout_s"], endpoint,
            options.get("world_size", 0), listen_fd=listener.detach() if listener is not None else None)

    def shutdown_weight_transfer(self) -> None:
        if self.transfer is not None:
            transfer, self.transfer = self.transfer, None
            transfer.shutdown()

    def sync_plan(self, bucket_mb: float) -> list[dict]:
        """The buckets a sync sends: the transfer's own (names and layout as its engines load them)."""
        if self.transfer is None:
            raise RuntimeError("weight sync: no transfer yet (init_weight_transfer first)")
        return self.transfer.source.plan

    # ---- forward passes -------------------------------------------------------------------
    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {k: v.to(self.device) for k, v in batch.items()}
        if "pixel_values" in out:
            out["pixel_values"] = out["pixel_values"].to(self.compute_dtype)
        return out

    def _logprobs(self, model, batch: dict[str, torch.Tensor], temperature: float, entropy: str = "none"):
        """`sequence_logprobs`, with shared prompts where the batch has them (learner/shared_prompt.py).
        The first time, both paths run without gradients and must agree, or sharing stays off.
        Normalised over the vocabulary without `cfg.banned_token_ids`, as the engines' log-probs."""
        banned = self.cfg.banned_token_ids
        if self.share_prompts is False or not worth_sharing(batch):
            return sequence_logprobs(model, batch, temperature, entropy, banned)
        if self.share_prompts is None:
            with torch.no_grad(), self._eval():
                plain = sequence_logprobs(model, batch, temperature, banned=banned)[0]
                try:
                    diff = agrees(shared_prompt_logprobs(model, batch, temperature, banned=banned)[0], plain,
                                  batch["loss_mask"], self.compute_dtype)
                    self.share_prompts = True
                    self.log(f"shared prompts: on (max |Δ log p| {diff:.2g} against the plain forward)")
                except Exception as err:  # a model whose cache or positions do not continue as Qwen-VL's
                    self.share_prompts = False
                    self.log(f"shared prompts: off for this model ({type(err).__name__}: {err})", warn=True)
                    return sequence_logprobs(model, batch, temperature, entropy, banned)
        return shared_prompt_logprobs(model, batch, temperature, entropy, banned)

    def log(self, message: str, warn: bool = False) -> None:
        if self.rank == 0:
            print(f"{'WARNING ' if warn else ''}learner: {message}", flush=True)

    @contextmanager
    def _eval(self):
        """No dropout for the log-probs of the policy that sampled (and of the reference)."""
        was_training = self.engine.training
        self.engine.eval()
        try:
            yield
        finally:
            self.engine.train(was_training)

    @torch.no_grad()
    def _ref_logprobs(self, batch: dict[str, torch.Tensor], temperature: float) -> torch.Tensor:
        with self._eval():
            if self.ref == ADAPTERS_OFF:
                with self.engine.module.disable_adapter():
                    return self._logprobs(self.engine, batch, temperature)[0]
            return self._logprobs(self.ref, batch, temperature)[0]

    # ---- training -------------------------------------------------------------------------
    def _check_not_banned(self, micro_batches: list[list[Sample]]) -> None:
        """No trained completion may hold a banned token: its log-prob would not be one (the
        normaliser leaves it out) and its gradient would push its logit up without bound. The
        engines never sample one, and the data layer refuses SFT targets that spell one out, so
        this is an engine that ignored the ban (vrft.rollout.processor.banned_token_ids)."""
        banned = set(self.cfg.banned_token_ids)
        for s in (s for micro in micro_batches for s in micro if s.weight > 0):
            sampled = s.completion_ids if s.completion_mask is None else \
                [t for t, m in zip(s.completion_ids, s.completion_mask, strict=True) if m]  # not observations
            found = banned.intersection(sampled)
            if found:
                raise ValueError(f"a completion holds the banned token id(s) {sorted(found)}, which no engine "
                                 "may sample: its rollout engine ignored learner.banned_token_ids")

    def prepare(self, micro_batches: list[list[Sample]], pad_id: int, mode: str = "grpo",
                temperature: float = 1.0) -> list[list[float]] | None:
        """Collate this rank's micro-batches and keep them for `train_step(None, ...)`. Before any
        update, compute what later updates need from the policy that sampled: its log-probs (the
        old log-probs of num_iterations > 1) and the reference's. With `kl_in_reward`, returns each
        sample's Σ_t KL_t, per micro-batch, for the group to fold into the rewards."""
        grpo = mode == "grpo"
        self._check_not_banned(micro_batches)
        self._micro = [collate(m, pad_id, grpo and self.cfg.mask_truncated) for m in micro_batches]
        self._old = [None] * len(self._micro)
        self._ref = [None] * len(self._micro)
        reuse = grpo and (self.cfg.num_iterations > 1 or (self.cfg.kl_in_reward and self.ref is not None))
        if not reuse:
            return None
        kl_sums: list[list[float]] = []
        with torch.no_grad(), self._eval():
            for i, micro in enumerate(self._micro):
                batch = self._to_device(micro)
                self._old[i] = self._logprobs(self.engine, batch, temperature)[0]
                if self.ref is not None:
                    self._ref[i] = self._ref_logprobs(batch, temperature)
                if self.cfg.kl_in_reward and self._ref[i] is not None:
                    kl = sequence_kl(self._old[i], self._ref[i], batch["loss_mask"], self.cfg.kl_estimator)
                    kl_sums.append(kl.float().cpu().tolist())
        return kl_sums if self.cfg.kl_in_reward and self.ref is not None else None

    def train_step(self, micro_batches: list[list[Sample]] | None, norms: dict[str, float], pad_id: int,
                   mode: str = "grpo", temperature: float = 1.0,
                   advantages: list[list[float]] | None = None) -> dict[str, float]:
        """`num_iterations` optimizer steps (1 for SFT) over this rank's micro-batches, the same count
        on every rank. `micro_batches=None` trains on those given to `prepare`; `advantages`, if
        given, replace the samples' advantages (per micro-batch)."""
        if micro_batches is not None:
            self.prepare(micro_batches, pad_id, mode, temperature)
        if advantages is not None:
            for micro, adv in zip(self._micro, advantages, strict=True):
                micro["advantages"] = torch.tensor(adv, dtype=torch.float32)
        iterations = self.cfg.num_iterations if mode == "grpo" else 1
        try:
            results = [self._update(norms, mode, temperature) for _ in range(iterations)]
        finally:
            self._micro, self._old, self._ref = [], [], []
            if self.cuda:  # a colocated engine wakes after the step into what the allocator keeps
                release_cached_memory()
        return average_iterations(results)

    def _update(self, norms: dict[str, float], mode: str, temperature: float) -> dict[str, float]:
        self.engine.train()
        sums: dict[str, float] = {}
        maxima: dict[str, float] = {}
        tokens_seen = 0.0
        finite = True
        inline_ref = self.ref is not None and not self.cfg.kl_in_reward
        for i, micro in enumerate(self._micro):
            batch = self._to_device(micro)
            if mode == "sft":
                logp, _ = self._logprobs(self.engine, batch, temperature)
                loss, stats = sft_objective(logp, batch, norms)
            else:
                ref_logp = self._ref[i]
                if ref_logp is None and inline_ref:  # before the policy's graph exists: less memory
                    ref_logp = self._ref_logprobs(batch, temperature)
                logp, entropy = self._logprobs(self.engine, batch, temperature,
                                               "grad" if self.cfg.entropy_coef > 0 else "value")
                loss, stats = grpo_objective(logp, batch, self.cfg, norms, old_logp=self._old[i],
                                             ref_logp=ref_logp if inline_ref else None, entropy=entropy)
            finite = finite and bool(torch.isfinite(loss.detach()))
            # DeepSpeed averages gradients over ranks; contributions are normalised batch-wide,
            # so the sum over ranks is the loss: undo the average.
            self.engine.backward(loss * self.world_size)
            n_tok = float((batch["loss_mask"] * batch["weights"][:, None]).sum())
            tokens_seen += n_tok
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for key, value in stats.items():
                if key.endswith("_max"):
                    maxima[key] = max(maxima.get(key, value), value)
                else:
                    sums[key] = sums.get(key, 0.0) + value * n_tok
        skipped = self._step(finite)
        out = {k: (v if k == "loss" else v / max(tokens_seen, 1.0)) for k, v in sums.items()}
        out.update(maxima)
        out["tokens"] = tokens_seen
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is None:
            grad_norm = self._grad_norm
        if grad_norm is not None:
            out["grad_norm"] = float(grad_norm)
        out["lr"] = float(self.engine.get_lr()[0])
        out["skipped_nonfinite"] = float(skipped)
        self._nonfinite_in_row = self._nonfinite_in_row + 1 if skipped else 0
        if self._nonfinite_in_row >= self.cfg.max_nonfinite_in_row:
            raise RuntimeError(f"learner: {self._nonfinite_in_row} updates in a row had a non-finite loss or "
                               f"gradient norm (loss {out['loss']:.4g}); stopping: lower learner.lr or "
                               "check the rewards")
        return out

    def _step(self, loss_finite: bool) -> bool:
        """The optimizer update, unless a loss or the gradient norm is NaN/inf on any rank; returns
        whether it was skipped. The decision is collective, so every rank skips together."""
        # ZeRO 1-3 and bf16 optimizers check the global grad norm themselves and skip (grads
        # cleared, LR schedule not advanced); fp32 ZeRO-0 steps the client optimizer blindly.
        ds_checks = hasattr(self.engine.optimizer, "overflow")
        bad = not loss_finite
        self._grad_norm = None
        if not ds_checks:  # DeepSpeed clips ZeRO-0's gradients but keeps no norm: ours, before clipping
            grads = [p.grad.detach() for p in self.engine.module.parameters() if p.grad is not None]
            self._grad_norm = float(torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(g.float()) for g in grads]))) if grads else 0.0
            bad = bad or not math.isfinite(self._grad_norm)
        if self._any_rank(bad) and not ds_checks:
            # Not engine.step(): its all-reduce would turn missing grads into zeros and AdamW would
            # still move the weights (momentum, weight decay).
            self.engine.zero_grad()
            return True
        self.engine.step()
        return bad or not self.engine.was_step_applied()

    def _any_rank(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def _weights_finite(self) -> bool:
        """Every rank's own weights (its ZeRO-3 partition) are finite, on all ranks (collective)."""
        ok = all(bool(torch.isfinite(getattr(p, "ds_tensor", p).detach()).all())
                 for p in self.engine.module.parameters())
        return not self._any_rank(not ok)

    @torch.no_grad()
    def logprobs(self, samples: list[Sample], pad_id: int, temperature: float = 1.0) -> list[list[float]]:
        """The policy's per-token log-probs of each sample's completion (collective under ZeRO-3)."""
        batch = self._to_device(collate(samples, pad_id))
        with self._eval():
            logp = self._logprobs(self.engine, batch, temperature)[0].float().cpu()
        mask = batch["loss_mask"].cpu().bool()
        return [logp[i][mask[i]].tolist() for i in range(len(samples))]

    # ---- weight sync ----------------------------------------------------------------------
    def send_weights(self, version: int) -> dict[str, float]:
        """Send the weights as `version` to every engine (rank 0; under ZeRO-3 every rank gathers).
        Rank 0 returns bytes, buckets and seconds."""
        if self.transfer is None:
            raise RuntimeError("weight sync: send_weights before init_weight_transfer")
        self.version = version
        return self.transfer.send_weights(version)

    # ---- checkpoints ----------------------------------------------------------------------
    def save(self, path: str, tag: str) -> None:
        """DeepSpeed's state (module, optimizer, scheduler), each rank's RNG, and (rank 0) how to
        rebuild the model offline. Collective. Refuses (on every rank) if any weight is NaN/inf."""
        if not self._weights_finite():
            raise RuntimeError("learner: the weights are not finite; refusing to write a checkpoint")
        self.engine.save_checkpoint(path, tag=tag, client_state={"version": self.version})
        save_rng(Path(path) / tag / f"rng_rank{self.rank}.json")
        if self.rank == 0:
            local = Path(self.model_path).expanduser()
            write_meta(Path(path), {
                "tag": tag, "model_path": str(local.resolve()) if local.exists() else self.model_path,
                "trust_remote_code": self.trust_remote_code, "zero_stage": self.cfg.zero_stage,
                "world_size": self.world_size, "version": self.version,
                "lora": {"rank": self.cfg.lora_rank, "scaling": self.cfg.lora_scaling} if self.cfg.lora_rank else None,
            })

    def load(self, path: str, tag: str) -> int:
        with weights_only_loads():  # a checkpoint folder must not be able to run code here
            _, client = self.engine.load_checkpoint(path, tag=tag, load_module_strict=True)
        self.version = int((client or {}).get("version", 0))
        # A checkpoint written by a different number of ranks has no RNG file for some ranks:
        # then those keep their seeds (the weights and optimizer are still exact).
        load_rng(Path(path) / tag / f"rng_rank{self.rank}.json")
        return self.version

    def save_hf(self, path: str, extra_dir: str | None = None) -> None:
        """The plain model (LoRA merged) as a Hugging Face folder, gathered bucket by bucket under
        ZeRO-3 (collective) and written by rank 0, with the files of `extra_dir` (a processor's)
        beside it. Written into PATH.tmp and renamed: PATH is complete or absent, never partial."""
        if not self._weights_finite():
            raise RuntimeError("learner: the weights are not finite; refusing to write a model")
        module = self.engine.module
        state = dict(iter_tensors(plain_entries(module, changing_only=False, checkpoint=True), self.zero3,
                                  keep=self.rank == 0))
        if self.rank == 0:
            base = module.get_base_model() if is_peft(module) else module
            final = Path(path)
            tmp = final.with_name(final.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)  # ours, left by a crash mid-write
            write_hf_folder(tmp, state, base.config, getattr(base, "generation_config", None))
            if extra_dir:
                shutil.copytree(extra_dir, tmp, dirs_exist_ok=True)
            old = final.with_name(final.name + ".old.tmp")
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
