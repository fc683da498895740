"""The GPU check's Python side (benchmarks/gpu_check.sh runs it): on one NVIDIA GPU, in this order,

    sample     vLLM sampling of a Qwen2-VL-architecture model (orchestrator/assets/tiny_model.py,
               made here, offline) on image prompts: tokens/s, and the engine's log-probs against
               the learner's on the same completion (before any update)
    sync       a bf16-free (fp32) learner step, then the weight broadcast over NCCL into the engine;
               the engine's teacher-forced log-probs must equal the learner's (max abs diff printed)
    sleep      the colocated cycle: engine sleep (GPU memory freed, measured), wake, sample again
               with the same seed: the same tokens
    learn_bf16 one bf16 GRPO learner step (ZeRO-2, one rank): seconds, and that the loss is finite

Every section prints `BENCH gpu_<...>` lines and `GPUCHECK <section> ok|FAIL <why>`; a failing
section does not stop the others. `--device cpu` is the dry path that CPU tests run: the same code
with the transformers engine, gloo and fp32, so everything but the CUDA calls is exercised.

One GPU holds both the engine and the learner (fractional Ray GPUs), as `rollout.placement:
colocated` does. NCCL refuses a communicator whose two ranks sit on the same device ("Duplicate GPU
detected") in some versions: if `sync` fails that way, that is the finding, reported as such.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

SECTIONS = ("sample", "sync", "sleep", "learn_bf16")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the dry path")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--size", choices=["tiny", "small"], default="small", help="tiny_model.py size")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--workdir", help="default: a temporary folder")
    return p.parse_args(argv)


class Check:
    """The shared set-up (model, prompts, actors), made once, on first use."""

    def __init__(self, args: argparse.Namespace, work: Path):
        self.args, self.work = args, work
        self.cuda = args.device == "cuda"
        self._worker = self._learner = None

    def setup(self) -> None:
        import ray

        from orchestrator.assets.synthetic import make_synthetic_data
        from orchestrator.assets.tiny_model import make_tiny_model
        from orchestrator.sources import decode_image, load_task_dataset
        from rollout.inputs import build_prompt_inputs
        from rollout.processor import load_processor

        self.model = str(make_tiny_model(self.work / "model", size=self.args.size))
        data = make_synthetic_data(self.work / "color", task="color", n=self.args.prompts, seed=0)
        self.processor = load_processor(self.model)
        rows = [r for r in load_task_dataset(str(data)) if decode_image(r["image"]) is not None]
        self.prompts = [build_prompt_inputs(self.processor, r["problem"], [decode_image(r["image"])])
                        for r in rows]
        if not ray.is_initialized():
            ray.init(num_cpus=max(2, os.cpu_count() or 1), num_gpus=1 if self.cuda else 0,
                     include_dashboard=False, log_to_driver=True)

    def sampling(self, seed: int):
        from rollout.engine import SamplingParams
        return SamplingParams(n=self.args.n, max_new_tokens=self.args.max_new_tokens, seed=seed)

    @property
    def worker(self):
        if self._worker is None:
            import ray

            from rollout.worker import RolloutWorker
            if self.cuda:  # colocated: the engine leaves the learner room on the same GPU
                opts = {"num_gpus": 0.45, "num_cpus": 1}
                engine = ("vllm", {"gpu_memory_utilization": 0.35, "enable_sleep_mode": True, "dtype": "float32"})
            else:
                opts, engine = {"num_cpus": 1}, ("hf", {})
            self._worker = RolloutWorker.options(**opts).remote(engine[0], self.model, engine[1], 1)
            ray.get(self._worker.ready.remote())
        return self._worker

    def learner(self, dtype: str):
        from learner import LearnerConfig, LearnerGroup
        gpu = {"num_gpus": 0.45, "num_cpus": 1} if self.cuda else {"num_cpus": 1}
        cfg = LearnerConfig(world_size=1, zero_stage=2, lr=1e-3, dtype=dtype, torch_threads=1,
                            num_gpus_per_rank=gpu.get("num_gpus", 0.0))
        return LearnerGroup(self.model, cfg, total_steps=2, pad_id=self.processor.tokenizer.pad_token_id,
                            rank_options=[gpu])

    def samples(self, groups):
        from learner import Sample
        p = self.prompts[0]
        return [Sample(prompt_ids=p.input_ids, completion_ids=c.token_ids, reward=float(i % 2),
                       pixel_values=p.pixel_values, image_grid_thw=p.image_grid_thw,
                       prompt_mm_token_type_ids=p.mm_token_type_ids)
                for i, c in enumerate(groups[0])]


def section_sample(c: Check) -> None:
    import ray
    ray.get(c.worker.generate.remote(c.prompts[:1], c.sampling(0)))  # warm-up (CUDA graphs, caches)
    start = time.perf_counter()
    groups, _ = ray.get(c.worker.generate.remote(c.prompts, c.sampling(1)))
    seconds = time.perf_counter() - start
    tokens = sum(len(x.token_ids) for g in groups for x in g)
    print(f"BENCH gpu_sample_tokens_per_s {tokens / seconds:.0f} tokens/s "
          f"({len(c.prompts)} image prompts x n={c.args.n}, <= {c.args.max_new_tokens} tokens)")
    c.first_groups = groups


def section_sync(c: Check) -> None:
    import ray

    from learner import TrainBatch
    groups = getattr(c, "first_groups", None) or ray.get(c.worker.generate.remote(c.prompts[:1], c.sampling(1)))[0]
    learner = c.learner("float32")  # exactness is checked in fp32: bf16 rounding would hide a bad sync
    try:
        samples = c.samples(groups)
        fixed = samples[0]
        before = learner.logprobs([fixed])[0]
        print(f"BENCH gpu_engine_vs_learner_logprob_diff "
              f"{max(abs(a - b) for a, b in zip(before, groups[0][0].logprobs, strict=True)):.2e} nats")
        learner.train_step(TrainBatch(samples))
        after = learner.logprobs([fixed])[0]
        addr, port = learner.sync_endpoint()
        backend = "nccl" if c.cuda else "gloo"
        ray.get([learner.join_weight_sync(addr, port, 2, backend),
                 c.worker.join_weight_sync.remote(addr, port, 1, 2, backend)])
        plan = learner.plan(bucket_mb=1.0)
        start = time.perf_counter()
        receiving = c.worker.receive_weights.remote(plan, 1)
        sent = learner.broadcast_weights(1, bucket_mb=1.0)
        assert ray.get(receiving) == 1
        seconds = time.perf_counter() - start
        scored = ray.get(c.worker.score.remote(c.prompts[0], fixed.completion_ids))
        diff = max(abs(a - b) for a, b in zip(after, scored, strict=True))
        print(f"BENCH gpu_sync_s {seconds:.3f} s ({sent / 2**20:.1f} MiB, {len(plan)} buckets, {backend})")
        print(f"BENCH gpu_sync_logprob_max_abs_diff {diff:.2e} nats")
        if diff > 1e-4:
            raise AssertionError(f"engine and learner disagree after the sync by {diff:.2e}")
    finally:
        learner.shutdown()


def section_sleep(c: Check) -> None:
    import ray
    if not c.cuda:
        print("GPUCHECK sleep skipped: the CPU engines have no sleep mode")
        return
    import torch
    first, _ = ray.get(c.worker.generate.remote(c.prompts[:2], c.sampling(7)))
    free_awake = torch.cuda.mem_get_info()[0]
    start = time.perf_counter()
    ray.get(c.worker.sleep.remote())
    slept = time.perf_counter() - start
    free_asleep = torch.cuda.mem_get_info()[0]
    start = time.perf_counter()
    ray.get(c.worker.wake_up.remote())
    woke = time.perf_counter() - start
    again, _ = ray.get(c.worker.generate.remote(c.prompts[:2], c.sampling(7)))
    print(f"BENCH gpu_sleep_freed_gib {(free_asleep - free_awake) / 2**30:.2f} GiB")
    print(f"BENCH gpu_sleep_s {slept:.2f} s")
    print(f"BENCH gpu_wake_s {woke:.2f} s")
    same = [x.token_ids for g in first for x in g] == [x.token_ids for g in again for x in g]
    print(f"BENCH gpu_wake_same_tokens {int(same)} bool")
    if free_asleep <= free_awake or not same:
        raise AssertionError(f"sleep freed {(free_asleep - free_awake) / 2**20:.0f} MiB; same tokens: {same}")


def section_learn_bf16(c: Check) -> None:
    import math

    import ray

    from learner import TrainBatch
    groups = getattr(c, "first_groups", None) or ray.get(c.worker.generate.remote(c.prompts[:1], c.sampling(1)))[0]
    learner = c.learner("bfloat16" if c.cuda else "float32")
    try:
        batch = c.samples(groups)
        learner.train_step(TrainBatch(batch))  # warm-up: allocations, kernels
        start = time.perf_counter()
        metrics = learner.train_step(TrainBatch(c.samples(groups)))
        print(f"BENCH gpu_learner_step_s {time.perf_counter() - start:.3f} s "
              f"({len(batch)} samples, {'bf16' if c.cuda else 'fp32 (dry)'})")
        if not all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)):
            raise AssertionError(f"non-finite learner metrics: {metrics}")
    finally:
        learner.shutdown()


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device visible (use --device cpu for the dry path)", file=sys.stderr)
            return 2
    failed = []
    with tempfile.TemporaryDirectory(prefix="vrft-gpu-check-") as tmp:
        check = Check(args, Path(args.workdir or tmp))
        check.setup()
        for name in args.only:
            start = time.perf_counter()
            try:
                globals()[f"section_{name}"](check)
                print(f"GPUCHECK {name} ok {time.perf_counter() - start:.1f}s", flush=True)
            except Exception as err:
                traceback.print_exc()
                print(f"GPUCHECK {name} FAIL {type(err).__name__}: {str(err)[:300]}", flush=True)
                failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
