"""Rollout engine on transformers' `generate`: runs anywhere, including CPU-only machines.

vLLM is faster on GPU (vllm_engine.py); this engine is the reference the tests and the CPU demo use,
and the fallback where vLLM cannot run (vLLM's Qwen2-VL needs a GPU build).
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

from rollout.engine import Completion, SamplingParams
from rollout.inputs import PromptInputs, collate_prompts
from rollout.processor import vision_special_token_ids
from rollout.weight_sync import WeightReceiver

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Model types whose generate() continues from a given KV cache with the right positions (Qwen-VL's
# M-RoPE offsets included, transformers' `_prepare_position_ids_for_generation`), each checked in
# tests/test_hf_engine_prefill.py: for these the engine prefills each prompt once and gives its
# cache to all n samples (`_shared_prefill`). Other models prefill every row, as before.
SHARED_PREFILL_TYPES = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen2"}


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


def real_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """A left-padded row's positions count its real tokens only, as generate() counts them for
    the steps after a given cache."""
    return (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)


class TransformersEngine:
    def __init__(self, model_path: str, dtype: str = "auto", trust_remote_code: bool = False,
                 max_batch_size: int = 64, device: str | None = None, share_prefill: bool = True):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(dtype)
        self.model = load_causal_model(model_path, self.dtype, trust_remote_code).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {eos} if isinstance(eos, int) else set(eos or [self.tokenizer.eos_token_id])
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else next(iter(self.eos_ids))
        # A random or young model may sample vision tokens, which breaks re-scoring the sequence.
        self.suppress = vision_special_token_ids(self.tokenizer)
        self.max_batch_size = max_batch_size
        self.policy_version = 0
        # A text-only model's generate() refuses the VLM-only `mm_token_type_ids`.
        self.multimodal = hasattr(self.model.config, "vision_config")
        self._params = dict(self.model.named_parameters())
        self.share_prefill = share_prefill and self.model.config.model_type in SHARED_PREFILL_TYPES
        self.sync_world_size = 1
        self._receiver = WeightReceiver(self.device)

    @torch.no_grad()
    def generate(self, prompts: list[PromptInputs], sampling: SamplingParams) -> list[list[Completion]]:
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        per_chunk = max(1, self.max_batch_size // sampling.n)
        out: list[list[Completion]] = []
        for start in range(0, len(prompts), per_chunk):
            chunk = prompts[start:start + per_chunk]
            out.extend(self._generate_chunk(chunk, sampling))
        return out

    def _collate(self, prompts: list[PromptInputs], repeat: int) -> dict[str, torch.Tensor]:
        batch = collate_prompts(prompts, self.pad_id, repeat)
        if not self.multimodal:
            batch.pop("mm_token_type_ids")
        return batch

    def _shared_prefill(self, prompts, n: int) -> dict:
        """Each prompt's KV cache computed once and repeated for its n samples: generate() then
        runs only the prompts' last token and the new ones. The n samples of a group share their
        whole prompt (image included), so this removes (n-1)/n of the prefill and vision work,
        which dominates for image-heavy prompts. Same tokens and log-probs as prefilling every row
        (tests/test_hf_engine_prefill.py); vLLM's prefix caching does the same on GPU."""
        once = {k: v.to(self.device) for k, v in self._collate(prompts, 1).items()}
        head = {k: once[k][:, :-1] for k in ("input_ids", "attention_mask", "mm_token_type_ids") if k in once}
        vision = {k: once[k] for k in ("pixel_values", "image_grid_thw") if k in once}
        rope = self.model.model if hasattr(getattr(self.model, "model", None), "rope_deltas") else None
        if rope is not None:  # M-RoPE keeps each row's position offset on the model between calls
            rope.rope_deltas = None
        else:
            head["position_ids"] = real_token_positions(head["attention_mask"])
        cache = self.model(**head, **vision, use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(n)
        if rope is not None:
            rope.rope_deltas = rope.rope_deltas.repeat_interleave(n, dim=0)
        rows = {k: v.repeat_interleave(n, dim=0) for k, v in once.items() if k not in vision}
        # The image sits in the cache: generate() neither sees pixels nor needs their grid.
        return {**rows, "past_key_values": cache}

    def _generate_chunk(self, prompts, sampling: SamplingParams):
        # A VLM given no image at all takes the plain path: its forward then leaves the 3-D
        # positions to defaults that count left padding, which generate()'s later steps do not.
        # A one-token prompt leaves nothing to prefill before generate()'s first step.
        if self.share_prefill and sampling.n > 1 and min(len(p.input_ids) for p in prompts) > 1 and (
                not self.multimodal or any(p.pixel_values is not None for p in prompts)):
            batch = self._shared_prefill(prompts, sampling.n)
        else:
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
        del batch  # the shared cache's memory
        # Log-probs step by step: holding one [B, V] slice at a time, not [B, L, V].
        logprobs = torch.stack([
            torch.log_softmax(step.float() / scale, dim=-1)
            .gather(-1, new_tokens[:, t:t + 1]).squeeze(-1)
            for t, step in enumerate(gen.logits)
        ], dim=1).cpu()
        new_tokens = new_tokens.cpu()
        groups: list[list[Completion]] = []
        for row in range(new_tokens.shape[0]):
            ids = new_tokens[row].tolist()
            end = next((i + 1 for i, tok in enumerate(ids) if tok in self.eos_ids), None)
            finish = "stop" if end is not None else "length"
            end = end or len(ids)
            sample_i = row % sampling.n
            if sample_i == 0:
                groups.append([])
            groups[-1].append(Completion(
                sample_index=sample_i,
                text=self.tokenizer.decode(ids[:end], skip_special_tokens=True),
                token_ids=ids[:end],
                logprobs=logprobs[row, :end].tolist(),
                finish_reason=finish,
                policy_version=self.policy_version,
            ))
        return groups

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
        logp = torch.log_softmax(logits / temperature, dim=-1)
        return logp.gather(-1, completion[0].to(self.device)[:, None]).squeeze(-1).cpu().tolist()

    @torch.no_grad()
    def update_weights(self, named_tensors: dict[str, torch.Tensor], version: int) -> None:
        for name, tensor in named_tensors.items():
            param = self._params.get(name)
            if param is None:
                raise KeyError(f"weight sync: the rollout model has no parameter named {name!r}")
            if param.shape != tensor.shape:
                raise ValueError(f"weight sync: {name} has shape {tuple(tensor.shape)}, "
                                 f"the rollout model expects {tuple(param.shape)}")
            param.copy_(tensor.to(device=param.device, dtype=param.dtype))
        self.policy_version = version

    def join_weight_sync(self, master_addr: str, port: int, rank: int, world_size: int, backend: str,
                         timeout_s: float = 300.0) -> None:
        self._receiver.join(master_addr, port, rank, world_size, backend, timeout_s)

    def receive_weights(self, plan: list[dict], version: int) -> int:
        for named in self._receiver.receive(plan):
            self.update_weights(named, version)
        return self.policy_version

    def sleep(self) -> None:
        """Free accelerator memory while the learner trains (a no-op on CPU)."""
        if self.device.type == "cuda":
            self.model.to("cpu")
            torch.cuda.empty_cache()

    def wake_up(self) -> None:
        if self.device.type == "cuda":
            self.model.to(self.device)
