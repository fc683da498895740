"""Rollout engine on transformers: runs anywhere, including CPU-only machines. The Qwen families
sample with the engine's own loop (decode.py: each prompt prefilled once, the KV cache written in
place, finished rows dropped); other models with transformers' `generate()`.

vLLM is faster on GPU (vllm_engine.py); this engine is the reference the tests and the CPU demo use,
and the fallback where vLLM cannot run (vLLM's Qwen2-VL needs a GPU build).
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

from vrft.rollout.decode import decode
from vrft.rollout.engine import Completion, SamplingParams
from vrft.rollout.inputs import PromptInputs, collate_prompts
from vrft.rollout.processor import banned_token_ids, load_processor
from vrft.rollout.turns import sample_with_tools, tool_use
from vrft.rollout.weight_sync import WeightReceiver

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Model types the engine's own sampling loop (rollout/decode.py) continues with generate()'s positions
# (Qwen-VL's M-RoPE offsets included), each checked against generate() in tests/test_hf_decode.py.
# Other models sample with generate(), every row prefilled.
DECODE_TYPES = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen2"}


def resolve_dtype(name: str) -> torch.dtype:
    """'auto' is bf16 on GPU and fp32 on CPU (bf16 matmuls on CPU are slow and inexact)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return _DTYPES[name]


def load_causal_model(path: str, dtype: torch.dtype, trust_remote_code: bool = False):
    """A VLM (config with a vision part) loads as ImageTextToText, a text-only model as CausalLM."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    cls = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    return cls.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)


class TransformersEngine:
    def __init__(self, model_path: str, dtype: str = "auto", trust_remote_code: bool = False,
                 max_batch_size: int = 64, device: str | None = None, share_prefill: bool = True,
                 tools: dict | None = None):
        """`tools`: multi-turn sampling with image tools (rollout/turns.py): `names` (built-in or
        "package.module:attribute"), `max_turns`, `max_total_tokens`, and `answer_frame` to override
        the family's."""
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(dtype)
        self.model = load_causal_model(model_path, self.dtype, trust_remote_code).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {eos} if isinstance(eos, int) else set(eos or [self.tokenizer.eos_token_id])
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else next(iter(self.eos_ids))
        # Never sampled, and out of every log-prob's normaliser (as in vLLM and the learner): a
        # sampled vision token breaks re-scoring the sequence (vrft.rollout.processor.banned_token_ids).
        self.suppress = banned_token_ids(self.tokenizer)
        self.max_batch_size = max_batch_size
        self.policy_version = 0
        # A text-only model's generate() refuses the VLM-only `mm_token_type_ids`.
        self.multimodal = hasattr(self.model.config, "vision_config")
        self._params = dict(self.model.named_parameters())
        self.own_loop = self.model.config.model_type in DECODE_TYPES
        self.share_prefill = share_prefill and self.own_loop
        self.sync_world_size = 1
        self._receiver = WeightReceiver(self.device)
        self._updating = False  # a weight update started and not finished (or failed midway)
        self.tool_use, self.processor = None, None
        if tools:
            if not self.own_loop:  # the turn loop continues contexts with the engine's own decode
                raise ValueError(f"rollout.tools needs a model the engine's own loop samples "
                                 f"({', '.join(sorted(DECODE_TYPES))}), not {self.model.config.model_type!r}")
            self.processor = load_processor(model_path, trust_remote_code=trust_remote_code)
            self.tool_use = tool_use(self.model.config.model_type, self.processor, tools)

    @torch.no_grad()
    def generate(self, prompts: list[PromptInputs], sampling: SamplingParams) -> list[list[Completion]]:
        self._check_weights_whole()
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        if self.tool_use is not None:
            return sample_with_tools(self._continue, self.processor, self.tokenizer, prompts, sampling,
                                     self.eos_ids, self.tool_use, self.policy_version)
        per_chunk = max(1, self.max_batch_size // sampling.n)
        out: list[list[Completion]] = []
        for start in range(0, len(prompts), per_chunk):
            chunk = prompts[start:start + per_chunk]
            out.extend(self._generate_chunk(chunk, sampling))
        return out

    def _continue(self, contexts: list[PromptInputs], sampling: SamplingParams, stop_ids: set[int],
                  ) -> list[tuple[list[int], list[float], bool]]:
        """One turn of each context (rollout/turns.py), `max_batch_size` contexts per forward."""
        rows: list[tuple[list[int], list[float], bool]] = []
        for start in range(0, len(contexts), self.max_batch_size):
            chunk = contexts[start:start + self.max_batch_size]
            batch = {k: v.to(self.device) for k, v in self._collate(chunk, 1).items()}
            out = decode(self.model, batch, 1, sampling, stop_ids, self.suppress)
            rows.extend(zip(out.token_ids, out.logprobs, out.stopped, strict=True))
        return rows

    def _collate(self, prompts: list[PromptInputs], repeat: int) -> dict[str, torch.Tensor]:
        batch = collate_prompts(prompts, self.pad_id, repeat)
        if not self.multimodal:
            batch.pop("mm_token_type_ids")
        return batch

    def prompt_view(self, prompt: PromptInputs) -> dict:
        """The inputs this engine's model runs for `prompt` (one row, so unpadded), for the start-up
        parity check: token ids, image placeholder tokens (by the model's own image token), the
        image grid and pixel values."""
        batch = self._collate([prompt], 1)
        ids = batch["input_ids"][0].tolist()
        image_token = getattr(self.model.config, "image_token_id", None)
        return {"input_ids": ids, "image_tokens": sum(t == image_token for t in ids) if image_token is not None else 0,
                "image_grid_thw": batch.get("image_grid_thw"), "pixel_values": batch.get("pixel_values")}

    def _generate_chunk(self, prompts, sampling: SamplingParams) -> list[list[Completion]]:
        n = sampling.n
        if self.own_loop:
            # Shared prefill: each prompt collated once and its cache repeated n times; else n copies.
            copies, repeat = (1, n) if self.share_prefill else (n, 1)
            batch = {k: v.to(self.device) for k, v in self._collate(prompts, copies).items()}
            out = decode(self.model, batch, repeat, sampling, self.eos_ids, self.suppress)
            rows = zip(out.token_ids, out.logprobs, out.stopped, strict=True)
        else:
            rows = self._hf_generate(prompts, sampling)
        groups: list[list[Completion]] = []
        for row, (ids, logprobs, stopped) in enumerate(rows):
            if row % n == 0:
                groups.append([])
            groups[-1].append(Completion(
                sample_index=row % n,
                text=self.tokenizer.decode(ids, skip_special_tokens=True),
                token_ids=ids,
                logprobs=logprobs,
                finish_reason="stop" if stopped else "length",
                policy_version=self.policy_version,
            ))
        return groups

    def _hf_generate(self, prompts, sampling: SamplingParams) -> list[tuple[list[int], list[float], bool]]:
        """transformers' generate(), every row prefilled: (token ids up to and with the stop token,
        their log-probs, whether it stopped) per row."""
        batch = {k: v.to(self.device) for k, v in self._collate(prompts, sampling.n).items()}
        # temperature 0 is greedy decoding (as in vLLM): the papers' evaluation protocols use it.
        greedy = sampling.temperature == 0
        scale = 1.0 if greedy else sampling.temperature
        # Every sampling knob is explicit: transformers fills any left unset from the model's own
        # generation_config, and Qwen2-VL-Instruct's (top_k 1, top_p 0.001, temperature 0.01,
        # repetition_penalty 1.05) would make the G samples of a group identical.
        decoding = {"do_sample": False} if greedy else {
            "do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
            "top_k": sampling.top_k, "min_p": 0.0, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}
        decoding.update(repetition_penalty=1.0, no_repeat_ngram_size=0)
        gen = self.model.generate(
            **batch,
            **decoding,
            max_new_tokens=sampling.max_new_tokens,
            suppress_tokens=self.suppress or None,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        new_tokens = gen.sequences[:, batch["input_ids"].shape[1]:]
        # Log-probs step by step: holding one [B, V] slice at a time, not [B, L, V]; over the
        # vocabulary without the banned tokens (the raw logits include them).
        logprobs = torch.stack([
            torch.log_softmax(self._allowed(step.float()) / scale, dim=-1)
            .gather(-1, new_tokens[:, t:t + 1]).squeeze(-1)
            for t, step in enumerate(gen.logits)
        ], dim=1).cpu()
        rows = []
        for row, ids in enumerate(new_tokens.cpu().tolist()):
            end = next((i + 1 for i, tok in enumerate(ids) if tok in self.eos_ids), None)
            rows.append((ids[:end or len(ids)], logprobs[row, :end or len(ids)].tolist(), end is not None))
        return rows

    def _allowed(self, logits: torch.Tensor) -> torch.Tensor:
        """The banned tokens' logits at -inf (a banned token in `token_ids` scores -inf)."""
        if not self.suppress:
            return logits
        return logits.index_fill(-1, torch.tensor(self.suppress, device=logits.device), float("-inf"))

    @torch.no_grad()
    def score(self, prompt: PromptInputs, token_ids: list[int], temperature: float = 1.0) -> list[float]:
        batch = self._collate([prompt], 1)
        completion = torch.tensor([token_ids], dtype=torch.long)
        batch["input_ids"] = torch.cat([batch["input_ids"], completion], dim=1)
        batch["attention_mask"] = torch.cat([batch["attention_mask"], torch.ones_like(completion)], dim=1)
        if "mm_token_type_ids" in batch:
            batch["mm_token_type_ids"] = torch.cat(
                [batch["mm_token_type_ids"], torch.zeros_like(completion)], dim=1)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        logits = self.model(**batch).logits[0, -len(token_ids) - 1:-1].float()
        logp = torch.log_softmax(self._allowed(logits) / temperature, dim=-1)
        return logp.gather(-1, completion[0].to(self.device)[:, None]).squeeze(-1).cpu().tolist()

    @torch.no_grad()
    def load_weights(self, named_tensors: dict[str, torch.Tensor], version: int) -> None:
        """Load the tensors given here (transformers names) as `version`: tests and small models."""
        self._copy_in(named_tensors)
        self.policy_version = version

    @torch.no_grad()
    def _copy_in(self, named_tensors: dict[str, torch.Tensor]) -> None:
        for name, tensor in named_tensors.items():
            param = self._params.get(name)
            if param is None:
                raise KeyError(f"weight sync: the rollout model has no parameter named {name!r}")
            if param.shape != tensor.shape:
                raise ValueError(f"weight sync: {name} has shape {tuple(tensor.shape)}, "
                                 f"the rollout model expects {tuple(param.shape)}")
            param.copy_(tensor.to(device=param.device, dtype=param.dtype))

    # ---- weight sync: the four calls of vLLM's weight-sync client protocol (learner/transfer.py) ----
    def init_weight_transfer_engine(self, init_info: dict) -> None:
        """Join the learner's transfer (gloo/nccl: rank `rank_offset` of its group; ipc: nothing)."""
        self._receiver.init(init_info)

    def start_weight_update(self) -> None:
        self._updating = True  # until finish_weight_update: sampling half-updated weights is refused

    def update_weights(self, update_info: dict) -> None:
        """One payload of the learner's update: every bucket of a plan, or one bucket by IPC."""
        if not self._updating:
            raise RuntimeError("weight sync: update_weights before start_weight_update")
        for named in self._receiver.receive(update_info):
            self._copy_in(named)

    def finish_weight_update(self, weight_version: int) -> int:
        self._updating = False
        self.policy_version = int(weight_version)
        return self.policy_version

    def _check_weights_whole(self) -> None:
        if self._updating:
            raise RuntimeError("the weights are half-updated (a weight sync started and did not finish): "
                               "this engine is not sampled from again; the orchestrator replaces it")

    def sleep(self) -> None:
        """Free accelerator memory while the learner trains (a no-op on CPU)."""
        if self.device.type == "cuda":
            self.model.to("cpu")
            torch.cuda.empty_cache()

    def wake_up(self) -> None:
        if self.device.type == "cuda":
            self.model.to(self.device)

