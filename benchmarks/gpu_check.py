"""The GPU check's Python side (benchmarks/gpu_check.sh runs it), for the one-GPU machine it can run
on: the image's own Python, torch and transformers, no Ray and no vLLM. In this order:

    sample         the transformers engine samples tiny Qwen2-VL, Qwen2.5-VL and Qwen3-VL models
                   (vrft/testing/tiny_model.py, tied embeddings) on image prompts whose
                   images need resizing: tokens/s, and the engine's sampled log-probs against its
                   own teacher-forced ones
    zero2, zero3   a DeepSpeed learner rank (vrft.learner.worker.LearnerRank, world size 1) takes GRPO
                   steps under ZeRO-2 / ZeRO-3: seconds per step, finite metrics, and the gradient
                   accumulation dtype DeepSpeed reports (fp32 required under bf16)
    transfer       a ZeRO-3 rank's update goes to the engine through the weight-transfer interface
                   (learner/transfer.py; CUDA IPC between the two processes on the one GPU), twice;
                   after each, the engine's teacher-forced log-probs must equal the learner's
    shared_prompt  the learner's shared-prompt forward (learner/shared_prompt.py) against the plain
                   one, per model family

On CUDA every process prints its peak memory per phase (`BENCH gpu_mem_...`, allocated and
reserved, the peaks reset between phases). Every section prints `BENCH gpu_<...>` lines and
`GPUCHECK <section> ok|FAIL <why>`; a failing section does not stop the others.

The engine and the learner ranks are plain objects in three spawned processes (CUDA does not
survive fork; DeepSpeed's state is per process, so one rank per ZeRO stage), driven over
multiprocessing pipes (`Check`); the engine's process also answers the ZeRO-3 rank's weight-transfer
client directly. `--device cpu` is the dry path that CPU tests run: the same harness with fp32,
gloo in place of CUDA IPC, and the tiny size, so everything but the CUDA calls is exercised.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

SECTIONS = ("sample", "zero2", "zero3", "transfer", "shared_prompt")
FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
PROBLEM = ("What colour is the shape in the image? Output the thinking process in <think> </think> and "
           "the final answer in <answer> </answer> tags.")
# Sizes no patch grid divides (14 px patches merged 2x2, or 16 px): the processor must resize both,
# one up to the grid, one down under max_pixels.
IMAGE_SIZES = ((90, 62), (300, 211))
COMPLETIONS = ("<think>the shape is red</think><answer>red</answer>",
               "<think>I see a blue square</think><answer>blue</answer>",
               "<think>green</think><answer>green</answer>",
               "<think>the colour of the circle is yellow and it is large</think><answer>yellow</answer>")
MiB = 2**20


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the dry path")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    p.add_argument("--size", choices=["tiny", "small"], help="tiny_model.py size (default: small on "
                   "cuda, tiny on cpu)")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--n", type=int, default=8, help="samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--backend", choices=["ipc", "nccl", "gloo"],
                   help="weight-transfer backend (default: ipc on cuda, gloo on cpu)")
    p.add_argument("--lr", type=float, default=1e-2, help="large, so an update visibly moves the log-probs")
    p.add_argument("--call-timeout-s", type=float, default=150.0, help="bound on any one call to a process")
    p.add_argument("--limit-s", type=float, default=360.0, help="the whole check's bound: calls time out "
                   "before it, and sections that would start after it fail as not run")
    p.add_argument("--workdir", help="default: a temporary folder")
    args = p.parse_args(argv)
    args.size = args.size or ("small" if args.device == "cuda" else "tiny")
    args.backend = args.backend or ("ipc" if args.device == "cuda" else "gloo")
    return args


def bench(name: str, value, unit: str, note: str = "") -> None:
    print(f"BENCH gpu_{name} {value} {unit}" + (f" ({note})" if note else ""), flush=True)


# ---- processes ------------------------------------------------------------------------------
class RemoteError(RuntimeError):
    """A call raised in the other process (the message is its exception's first line), or the
    process died."""


def _reply(conn: Connection, fn, args: tuple, kwargs: dict) -> None:
    try:
        conn.send(("ok", fn(*args, **kwargs)))
    except BaseException as err:  # noqa: BLE001 - reported to the caller, which decides
        traceback.print_exc()
        first = (str(err).strip().splitlines() or [""])[0]
        conn.send(("err", f"{type(err).__name__}: {first}"))


def _serve(conns: list[Connection], args: tuple) -> None:
    """A child process: a `Host(*args)` answering `(method, args, kwargs)` on every pipe until the
    first one (the driver's) closes or sends None; then it exits at once (no teardown to wait for)."""
    host = Host(*args)
    driver, live = conns[0], list(conns)
    while driver in live:
        for conn in wait(live):
            try:
                msg = conn.recv()
            except EOFError:
                msg = None
            if msg is None:
                live.remove(conn)
                continue
            method, a, kw = msg
            _reply(conn, getattr(host, method), a, kw)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def call(conn: Connection, timeout_s: float, method: str, *args, **kwargs):
    conn.send((method, args, kwargs))
    if not conn.poll(timeout_s):
        raise TimeoutError(f"{method} did not answer within {timeout_s:g} s")
    try:
        status, value = conn.recv()
    except EOFError:
        raise RemoteError(f"the process died during {method}") from None
    if status == "err":
        raise RemoteError(f"{method}: {value}")
    return value


class Process:
    """A spawned child serving a `Host`. `extra`: further pipe ends it answers on (the engine's end
    of the learner's weight-transfer client)."""

    def __init__(self, ctx, name: str, args: tuple, timeout_s: float, deadline: float,
                 extra: tuple[Connection, ...] = ()):
        self.conn, child = ctx.Pipe()
        self.timeout_s, self.deadline, self.name = timeout_s, deadline, name
        self.proc = ctx.Process(target=_serve, args=([child, *extra], args), name=f"gpu_check-{name}")
        self.proc.start()
        child.close()

    def __call__(self, method: str, *args, **kwargs):
        timeout = max(1.0, min(self.timeout_s, self.deadline - time.monotonic()))
        try:
            return call(self.conn, timeout, method, *args, **kwargs)
        except TimeoutError:
            self.kill()  # its late answer would be read as the next call's
            raise

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(15)
        self.kill()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# ---- what runs in the children ----------------------------------------------------------------
class PipeClient:
    """The weight-sync client learner rank 0 drives (learner/transfer.py): each of vLLM's four
    client calls goes over a pipe to the engine's process. The engine takes rank 1 of a group
    transport (learner rank 0 is rank 0)."""

    def __init__(self, conn: Connection, timeout_s: float):
        self.conn, self.timeout_s = conn, timeout_s

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        if "master_address" in init_info:
            init_info = {**init_info, "rank_offset": 1}
        call(self.conn, self.timeout_s, "init_weight_transfer_engine", init_info)

    def start_weight_update(self) -> None:
        call(self.conn, self.timeout_s, "start_weight_update")

    def update_weights(self, update_info: dict) -> None:
        call(self.conn, self.timeout_s, "update_weights", update_info)

    def finish_weight_update(self, weight_version: int | None = None) -> int:
        version = call(self.conn, self.timeout_s, "finish_weight_update", int(weight_version))
        if version != weight_version:
            raise RuntimeError(f"the engine reports version {version}, expected {weight_version}")
        return version


class Host:
    """What a child process holds: a transformers engine (`TransformersEngine`), a learner rank
    (`LearnerRank`, world size 1: one per process, DeepSpeed's state is global) or plain models,
    as plain objects. `client_conn`: the pipe to the engine's process, for the weight transfer."""

    def __init__(self, device: str, timeout_s: float, client_conn: Connection | None = None):
        import torch  # noqa: F401 - imported while the driver builds the models
        import transformers  # noqa: F401

        self.device = device
        self.dtype = "bfloat16" if device == "cuda" else "float32"
        self.client = PipeClient(client_conn, timeout_s) if client_conn is not None else None
        self.engine = self.rank = None

    def peak(self) -> dict[str, float]:
        """Peak CUDA memory since the last call, MiB (empty on CPU); the peaks are reset."""
        import torch

        if self.device != "cuda":
            return {}
        out = {"alloc": torch.cuda.max_memory_allocated() / MiB, "reserved": torch.cuda.max_memory_reserved() / MiB}
        torch.cuda.reset_peak_memory_stats()
        return out

    def _sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    # ---- the engine ----
    def load_engine(self, model_path: str) -> dict:
        from vrft.rollout.hf_engine import TransformersEngine

        if self.engine is not None:  # the last family's, freed before the next loads
            self.engine = None
            if self.device == "cuda":
                import torch

                torch.cuda.empty_cache()
        self.engine = TransformersEngine(model_path, dtype=self.dtype, device=self.device)
        model = self.engine.model
        return {"tied": model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr(),
                "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}

    def generate(self, prompts, sampling):
        start = time.perf_counter()
        groups = self.engine.generate(prompts, sampling)
        self._sync()
        return groups, time.perf_counter() - start

    def score(self, prompt, token_ids: list[int]) -> list[float]:
        return self.engine.score(prompt, token_ids)

    # The engine's end of the weight transfer, called by name over the pipe as RolloutWorker's are over
    # Ray (rollout/worker.py): handed to the engine itself, so no second copy of those calls to drift.
    ENGINE_CALLS = frozenset({"init_weight_transfer_engine", "start_weight_update", "update_weights",
                              "finish_weight_update"})

    def __getattr__(self, name: str):
        if name in Host.ENGINE_CALLS and self.__dict__.get("engine") is not None:
            return getattr(self.engine, name)
        raise AttributeError(name)

    # ---- the learner rank ----
    def setup_learner(self, model_path: str, pad_id: int, cfg: dict) -> dict:
        from vrft.learner.config import LearnerConfig
        from vrft.learner.worker import LearnerRank

        self.pad_id, self.cfg = pad_id, LearnerConfig.model_validate(cfg)
        self.rank = LearnerRank(0, 1, self.cfg.model_dump())
        addr, port = self.rank.address()
        info = self.rank.setup(addr, port, model_path, total_steps=8)
        model_dtype, accum_dtype = self.rank.engine.get_data_types()
        return {**info, "model_dtype": str(model_dtype).removeprefix("torch."),
                "grad_accum_dtype": str(accum_dtype).removeprefix("torch."),
                "optimizer": type(self.rank.engine.optimizer).__name__}

    def train(self, samples) -> dict[str, float]:
        """One GRPO step as LearnerGroup.train_step takes it (advantages, norms, micro-batches)."""
        import torch

        from vrft.learner.algorithms import get_advantage
        from vrft.learner.batch import split_micro_batches

        rewards = torch.tensor([s.reward for s in samples], dtype=torch.float32)
        groups = torch.tensor([s.group_id for s in samples], dtype=torch.long)
        for s, adv in zip(samples, get_advantage(self.cfg.advantage)(rewards, groups).tolist(), strict=True):
            s.advantage = adv
        lengths = [len(s.completion_ids) for s in samples]
        norms = {"tokens": float(sum(lengths)), "seqs": float(len(samples)), "max_len": float(max(lengths))}
        micro = split_micro_batches(samples, self.cfg.micro_batch_size, self.cfg.token_budget)
        start = time.perf_counter()
        metrics = self.rank.train_step(micro, norms, self.pad_id)
        self._sync()
        return {**metrics, "seconds": time.perf_counter() - start}

    def logprobs(self, samples) -> list[list[float]]:
        return self.rank.logprobs(samples, self.pad_id)

    def init_transfer(self, backend: str, bucket_mb: float, timeout_s: float) -> None:
        options = {"engine": "hf", "bucket_mb": bucket_mb, "timeout_s": timeout_s}
        if backend != "ipc":  # a group transport: learner rank 0 and the engine
            options.update(endpoint=self.rank.address(), world_size=2)
        self.rank.init_weight_transfer(backend, self.client, options)

    def send(self, version: int) -> dict[str, float]:
        return self.rank.send_weights(version)

    # ---- a plain model ----
    def shared_prompt(self, model_path: str, samples, pad_id: int, banned: list[int]) -> dict[str, float]:
        """The shared-prompt forward against the plain one (log-probs, no gradients)."""
        import torch

        from vrft.learner.batch import collate
        from vrft.learner.model import load_model, sequence_logprobs
        from vrft.learner.shared_prompt import agrees, shared_prompt_logprobs, worth_sharing

        dtype = getattr(torch, self.dtype)
        model = load_model(model_path, self.dtype).to(self.device).eval()
        batch = {k: v.to(self.device) for k, v in collate(samples, pad_id).items()}
        batch["pixel_values"] = batch["pixel_values"].to(dtype)
        if not worth_sharing(batch):
            raise AssertionError("the batch has no shared prompts")
        with torch.no_grad():
            start = time.perf_counter()
            plain = sequence_logprobs(model, batch, banned=banned)[0]
            self._sync()
            middle = time.perf_counter()
            shared = shared_prompt_logprobs(model, batch, banned=banned)[0]
            self._sync()
            end = time.perf_counter()
        return {"max_abs_diff": agrees(shared, plain, batch["loss_mask"], dtype),
                "plain_s": middle - start, "shared_s": end - middle}


# ---- the driver ---------------------------------------------------------------------------------
@dataclass
class Family:
    name: str
    path: str
    pad_id: int
    banned: list[int]  # never sampled, out of every log-prob's normaliser (both sides)
    prompts: list  # PromptInputs
    completions: list[list[int]]  # fixed token ids the learner trains on


class Check:
    """Models and prompts (made once, on first use) and three child processes, started together at
    the beginning (their imports overlap the model building) and shared by the sections: `engine`
    (the engine; the shared-prompt forward), `learner3` (a ZeRO-3 rank, the engine's transfer
    peer: the pipe between them is made when they start) and `learner2` (a ZeRO-2 rank). A
    process found dead is started again (the engine and its peer together)."""

    NEEDS = {"sample": ("engine",), "zero2": ("learner2",), "zero3": ("learner3",),
             "transfer": ("engine", "learner3"), "shared_prompt": ("engine",)}

    def __init__(self, args: argparse.Namespace, work: Path):
        self.args, self.work = args, work
        self.cuda = args.device == "cuda"
        self.deadline = time.monotonic() + args.limit_s - 10  # room to close the processes and report
        self.ctx = mp.get_context("spawn")
        self._families: dict[str, Family] = {}
        self.procs: dict[str, Process] = {}
        self.learners: dict[str, dict] = {}  # process name -> its setup_learner() answer

    def start(self, names) -> None:
        timeout = self.args.call_timeout_s
        if {"engine", "learner3"} & set(names):
            for name in ("engine", "learner3"):
                if name in self.procs:
                    self.procs.pop(name).close()
                self.learners.pop(name, None)
            to_engine, engine_end = self.ctx.Pipe()
            self.procs["engine"] = Process(self.ctx, "engine", (self.args.device, timeout), timeout, self.deadline,
                                           (engine_end,))
            self.procs["learner3"] = Process(self.ctx, "learner3", (self.args.device, timeout, to_engine), timeout,
                                             self.deadline)
            engine_end.close()
            to_engine.close()
        if "learner2" in names:
            if "learner2" in self.procs:
                self.procs.pop("learner2").close()
            self.learners.pop("learner2", None)
            self.procs["learner2"] = Process(self.ctx, "learner2", (self.args.device, timeout), timeout,
                                             self.deadline)

    def proc(self, name: str) -> Process:
        if name not in self.procs or not self.procs[name].alive:
            self.start([name])
        return self.procs[name]

    def learner(self, name: str, fam: Family) -> tuple[Process, dict]:
        """The learner process `name`, its rank set up (once) on `fam`'s model."""
        proc = self.proc(name)
        if name not in self.learners:
            stage = 3 if name == "learner3" else 2
            cfg = {"world_size": 1, "zero_stage": stage, "dtype": "bfloat16" if self.cuda else "float32",
                   "lr": self.args.lr, "micro_batch_size": 4, "banned_token_ids": fam.banned,
                   "torch_threads": None if self.cuda else 1}
            self.learners[name] = proc("setup_learner", fam.path, fam.pad_id, cfg)
        return proc, self.learners[name]

    def family(self, name: str) -> Family:
        if name not in self._families:
            self._families[name] = self._make(name)
        return self._families[name]

    def _make(self, name: str) -> Family:
        from PIL import Image, ImageDraw

        from vrft.rollout.inputs import build_prompt_inputs
        from vrft.rollout.processor import banned_token_ids, load_processor
        from vrft.testing.tiny_model import make_tiny_model

        path = make_tiny_model(self.work / name, arch=name, size=self.args.size, tie_word_embeddings=True)
        processor = load_processor(str(path))
        colours = ((220, 30, 30), (30, 60, 220), (20, 150, 40), (235, 190, 0))
        prompts = []
        for i in range(self.args.prompts):
            w, h = IMAGE_SIZES[i % len(IMAGE_SIZES)]
            image = Image.new("RGB", (w, h), (255, 255, 255))
            ImageDraw.Draw(image).ellipse((w // 5, h // 5, 4 * w // 5, 4 * h // 5), fill=colours[i % 4])
            prompt = build_prompt_inputs(processor, PROBLEM, [image])
            _, gh, gw = prompt.image_grid_thw[0].tolist()
            patch = processor.image_processor.patch_size
            if (gh * patch, gw * patch) == (h, w):
                raise AssertionError(f"a {w}x{h} image went through unresized")
            prompts.append(prompt)
        tok = processor.tokenizer
        completions = [tok.encode(text) + [tok.convert_tokens_to_ids("<|im_end|>")] for text in COMPLETIONS]
        return Family(name, str(path), tok.pad_token_id, banned_token_ids(tok), prompts, completions)

    def samples(self, fam: Family, per_prompt: int = 4, prompts: int = 2) -> list:
        """`prompts` groups of `per_prompt` completions each (rewards 0/1 alternating)."""
        from vrft.orchestrator.core.records import to_sample

        return [to_sample(fam.prompts[g % len(fam.prompts)], fam.completions[(g + i) % len(fam.completions)],
                          reward=float((g + i) % 2), group_id=g)
                for g in range(prompts) for i in range(per_prompt)]

    def memory(self, phase: str, name: str) -> None:
        """The process's peaks since its last reading (CUDA only), then reset."""
        for kind, value in self.proc(name)("peak").items():
            bench(f"mem_{phase}_{kind}_mib", f"{value:.0f}", "MiB", f"peak in the {name} process")

    def close(self) -> None:
        for proc in self.procs.values():
            try:
                proc.conn.send(None)  # all at once: they exit together
            except OSError:
                pass
        for proc in self.procs.values():
            proc.close()
        self.procs = {}


def _diff(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        raise AssertionError(f"{len(a)} log-probs against {len(b)}")
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def section_sample(c: Check) -> None:
    from vrft.rollout.engine import SamplingParams

    engine = c.proc("engine")
    failed = []
    for name in c.args.families:
        fam = c.family(name)
        engine("peak")  # this family's phase starts here
        info = engine("load_engine", fam.path)
        if not info["tied"]:
            failed.append(f"{name}: the engine's output layer is not its embedding")
        sampling = SamplingParams(n=c.args.n, max_new_tokens=c.args.max_new_tokens, seed=1)
        engine("generate", fam.prompts[:1], SamplingParams(n=2, max_new_tokens=4, seed=0))  # warm-up
        groups, seconds = engine("generate", fam.prompts, sampling)
        tokens = sum(len(x.token_ids) for g in groups for x in g)
        bench(f"sample_tokens_per_s_{name}", f"{tokens / seconds:.0f}", "tokens/s",
              f"{len(fam.prompts)} image prompts x n={c.args.n}, <= {c.args.max_new_tokens} tokens, {info['dtype']}")
        # The sampling loop's log-probs (KV cache, shared prefill) against a full teacher-forced pass.
        first = next(x for g in groups for x in g if x.token_ids)
        diff = _diff(engine("score", fam.prompts[0], first.token_ids), first.logprobs)
        bench(f"sample_vs_score_max_abs_diff_{name}", f"{diff:.2e}", "nats")
        bound = 5e-2 if c.cuda else 1e-4
        if not all(math.isfinite(v) for g in groups for x in g for v in x.logprobs):
            failed.append(f"{name}: non-finite sampled log-probs")
        if diff > bound:
            failed.append(f"{name}: sampled and teacher-forced log-probs differ by {diff:.2e} (> {bound:g})")
        c.memory(f"sample_{name}", "engine")
    if failed:
        raise AssertionError("; ".join(failed))


def _learn(c: Check, stage: int) -> None:
    fam = c.family(c.args.families[0])
    name = f"learner{stage}"
    c.proc(name)("peak")  # the phase (set-up and two steps) starts here
    learner, info = c.learner(name, fam)
    bench(f"zero{stage}_grad_accum_fp32", int(info["grad_accum_dtype"] == "float32"), "bool",
          f"DeepSpeed's data types: model {info['model_dtype']}, gradient accumulation "
          f"{info['grad_accum_dtype']}; {info['optimizer']}")
    samples = c.samples(fam)
    learner("train", samples)  # warm-up: allocations, kernels
    metrics = learner("train", samples)
    bench(f"zero{stage}_step_s", f"{metrics['seconds']:.3f}", "s",
          f"{len(samples)} samples, {info['model_dtype']}, {fam.name}")
    c.memory(f"zero{stage}", name)
    bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad or metrics.get("skipped_nonfinite"):
        raise AssertionError(f"non-finite learner metrics: {bad or metrics}")
    if c.cuda and info["grad_accum_dtype"] != "float32":
        raise AssertionError(f"bf16 gradients accumulate in {info['grad_accum_dtype']}, not float32 "
                             "(learner/ds_config.py data_types.grad_accum_dtype)")


def section_zero2(c: Check) -> None:
    _learn(c, 2)


def section_zero3(c: Check) -> None:
    _learn(c, 3)


def section_transfer(c: Check) -> None:
    """ZeRO-3 learner -> engine, twice; the engine starts from the checkpoint (whatever the learner
    trained before), so both transfers carry a change the engine has not seen."""
    fam = c.family(c.args.families[0])
    learner, _ = c.learner("learner3", fam)
    engine = c.proc("engine")
    engine("load_engine", fam.path)
    learner("peak"), engine("peak")  # the phase starts here
    samples = c.samples(fam)
    fixed, prompt = samples[0], fam.prompts[0]
    bound = 1e-2 if c.cuda else 1e-5
    learner("init_transfer", c.args.backend, 1.0, c.args.call_timeout_s)
    for version in (1, 2):
        learner("train", samples)
        theirs = learner("logprobs", [fixed])[0]
        stale = _diff(engine("score", prompt, fixed.completion_ids), theirs)
        sent = learner("send", version)
        after = _diff(engine("score", prompt, fixed.completion_ids), theirs)
        bench(f"transfer_s_v{version}", f"{sent['seconds']:.3f}", "s",
              f"{sent['bytes'] / MiB:.2f} MiB in {sent['buckets']:.0f} buckets, {c.args.backend}, ZeRO-3")
        bench(f"transfer_logprob_diff_before_v{version}", f"{stale:.2e}", "nats", "updated learner, old engine")
        bench(f"transfer_logprob_max_abs_diff_v{version}", f"{after:.2e}", "nats", f"bound {bound:g}")
        if after > bound:
            raise AssertionError(f"engine and learner differ by {after:.2e} after transfer v{version} (> {bound:g})")
        if stale <= bound:
            raise AssertionError(f"the update moved the learner's log-probs by only {stale:.2e}: nothing was checked")
    c.memory("transfer_learner", "learner3")
    c.memory("transfer_engine", "engine")


def section_shared_prompt(c: Check) -> None:
    host = c.proc("engine")
    failed = []
    for name in c.args.families:
        fam = c.family(name)
        host("peak")
        try:
            out = host("shared_prompt", fam.path, c.samples(fam), fam.pad_id, fam.banned)
        except RemoteError as err:
            failed.append(f"{name}: {err}")
            continue
        bench(f"shared_prompt_max_abs_diff_{name}", f"{out['max_abs_diff']:.2e}", "nats",
              f"plain forward {out['plain_s']:.3f} s, shared {out['shared_s']:.3f} s")
        c.memory(f"shared_prompt_{name}", "engine")
    if failed:
        raise AssertionError("; ".join(failed))


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device visible (use --device cpu for the dry path)", file=sys.stderr)
            return 2
        print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    failed = []
    with tempfile.TemporaryDirectory(prefix="vrft-gpu-check-") as tmp:
        check = Check(args, Path(args.workdir or tmp))
        try:
            check.start({p for name in args.only for p in Check.NEEDS[name]})
            for name in args.only:
                start = time.perf_counter()
                if time.monotonic() > check.deadline - 15:
                    print(f"GPUCHECK {name} FAIL not run: the {args.limit_s:g} s limit is (nearly) spent", flush=True)
                    failed.append(name)
                    continue
                try:
                    globals()[f"section_{name}"](check)
                    print(f"GPUCHECK {name} ok {time.perf_counter() - start:.1f}s", flush=True)
                except Exception as err:
                    traceback.print_exc()
                    first = (str(err).strip().splitlines() or [""])[0]
                    print(f"GPUCHECK {name} FAIL {type(err).__name__}: {first[:300]}", flush=True)
                    failed.append(name)
        finally:
            check.close()
    print(f"GPUCHECK all {'FAIL ' + ' '.join(failed) if failed else 'ok'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
