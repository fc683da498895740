"""Engine/learner parity: the rollout engine and the learner must compute the same policy on the
same prompt, or every importance ratio and KL of the run is off while the rewards look fine.

Every step, `parity_metrics` logs the learner's own measurement of the gap (learner/objective.py:
`is/mismatch_kl`, `is/logprob_diff_max`, computed whatever `learner.is_correction` says) as

    parity/logprob_kl             mean per-token k3 estimate of KL(engine || learner) on the sampled tokens
    parity/max_abs_logprob_diff   max over those tokens of |log p_learner - log p_engine|

The learner's side is its log-probs of the sampled tokens under the policy that sampled them: the
training forward before the update (with `num_iterations` > 1, the old log-probs computed before the
first update, used by every iteration); the engine's are `Completion.logprobs`. Over the tokens
that enter the loss, token-weighted across micro-batches and learner ranks, maxima for the max.
They are logged only when comparable: every trained completion was sampled by the weights the
learner holds (an async batch sampled by an older version also holds the updates in between), at
the temperature the learner scores at, from the whole distribution (vLLM's log-probs under top-k /
top-p are those of the truncated one). `incomparable` says why not.

At start-up (the first step a process runs, fresh or resumed), `ParityWatch`:
  - before the learner trains, asks every rollout worker for the model inputs its engine runs for
    the step's first prompts (`RolloutWorker.prompt_view`) and compares them with the learner's
    `Sample`s: image placeholder tokens, image_grid_thw, pixel values, token ids;
  - once the first comparable step's parity metrics are in, checks them against
    `logging.alarms.parity_*`.
Either failing stops the run (`ParityError`, one line naming what differs) before the weights go
out and before any later step. Afterwards a crossed threshold logs one warning per metric.
"""

from __future__ import annotations

import logging

import ray
import torch

from vrft.orchestrator.config.schema import TrainConfig
from vrft.orchestrator.config.thresholds import AlarmThresholds
from vrft.orchestrator.core.records import PromptGroup, PromptItem, to_sample
from vrft.orchestrator.runtime.faults import RunStopped
from vrft.orchestrator.runtime.session import logprob_temperature

log = logging.getLogger("vrft")

# The learner's measurement -> its parity name, and the logging.alarms threshold that bounds it.
PARITY_KEYS = {"is/mismatch_kl": "parity/logprob_kl", "is/logprob_diff_max": "parity/max_abs_logprob_diff"}
THRESHOLDS = {"parity/logprob_kl": "parity_logprob_kl", "parity/max_abs_logprob_diff": "parity_max_abs_logprob_diff"}
CHECKED_PROMPTS = 4  # per worker at start-up: a prompt costs one collate (transformers engine)
# Normalised pixel values span about [-2, 2]; an engine that hands them on in bf16 rounds by < 0.016.
PIXEL_ATOL = 0.02


class ParityError(RunStopped):
    """The engine and the learner disagree at start-up; the message is the one line to show."""

    resumable = False


def incomparable(cfg: TrainConfig, groups: list[PromptGroup], learner_version: int) -> str | None:
    """Why this step's engine and learner log-probs cannot be compared (None: they can)."""
    rc = cfg.rollout
    temperature = logprob_temperature(cfg, cfg.learner)
    if temperature != rc.temperature:
        return (f"the learner scores at temperature {temperature:g} (learner.logprob_temperature), the "
                f"engine samples at {rc.temperature:g}")
    if rc.engine == "vllm" and (rc.top_k or rc.top_p < 1):
        return "vLLM's log-probs under top-k/top-p are those of the truncated distribution"
    versions = {c.completion.policy_version for g in groups if g.kept for c in g.completions}
    older = sorted(versions - {learner_version})
    if older:
        return (f"completions of policy version {', '.join(map(str, older))} trained at version "
                f"{learner_version} (async): the updates in between are in the gap too")
    return None


def parity_metrics(cfg: TrainConfig, groups: list[PromptGroup], learner_metrics: dict[str, float],
                   learner_version: int) -> dict[str, float]:
    """`parity/*` from the learner's metrics of this step (keys without the `learner/` prefix), when
    comparable (`incomparable`); else nothing."""
    if incomparable(cfg, groups, learner_version) is not None:
        return {}
    return {name: float(learner_metrics[key]) for key, name in PARITY_KEYS.items() if key in learner_metrics}


def _grid(t: torch.Tensor | None) -> list | None:
    return None if t is None else t.tolist()


def prompt_differences(view: dict, item: PromptItem) -> list[str]:
    """What differs between an engine's `prompt_view` of `item` and the learner's `Sample` of it,
    as "name: engine X, learner Y" (empty: the same)."""
    sample = to_sample(item.inputs, [])
    learner_image_tokens = sum(sample.prompt_mm_token_type_ids or [])
    out = []
    if view["image_tokens"] != learner_image_tokens:
        out.append(f"image placeholder tokens: engine {view['image_tokens']}, learner {learner_image_tokens}")
    engine_grid, learner_grid = _grid(view.get("image_grid_thw")), _grid(sample.image_grid_thw)
    if engine_grid != learner_grid:
        out.append(f"image_grid_thw: engine {engine_grid}, learner {learner_grid}")
    engine_pixels, learner_pixels = view.get("pixel_values"), sample.pixel_values
    if engine_pixels is not None and learner_pixels is not None:  # an engine may not expose them
        if engine_pixels.shape != learner_pixels.shape:
            out.append(f"pixel_values shape: engine {list(engine_pixels.shape)}, learner {list(learner_pixels.shape)}")
        else:
            gap = float((engine_pixels.float() - learner_pixels.float()).abs().max()) if engine_pixels.numel() else 0.0
            if gap > PIXEL_ATOL:
                out.append(f"pixel_values: max |difference| {gap:.3g} > {PIXEL_ATOL}")
    engine_ids, learner_ids = list(view["input_ids"]), list(sample.prompt_ids)
    if engine_ids != learner_ids:
        first = next((i for i, (a, b) in enumerate(zip(engine_ids, learner_ids, strict=False)) if a != b),
                     min(len(engine_ids), len(learner_ids)))
        out.append(f"token ids: engine {len(engine_ids)}, learner {len(learner_ids)} tokens, first "
                   f"difference at position {first}")
    return out


def crossings(metrics: dict[str, float], thresholds: AlarmThresholds) -> list[str]:
    """The parity metrics above their `logging.alarms` thresholds, worded."""
    out = []
    for name, field in THRESHOLDS.items():
        limit = getattr(thresholds, field)
        if name in metrics and limit is not None and not metrics[name] <= limit:  # NaN crosses too
            out.append(f"{name} = {metrics[name]:.3g} > logging.alarms.{field} = {limit:g}")
    return out


class ParityWatch:
    """The loop's parity checks: at start-up they stop the run; afterwards they warn once each."""

    def __init__(self, cfg: TrainConfig):
        self.cfg, self.thresholds = cfg, cfg.logging.alarms
        self.prompts_checked = False
        self.logprobs_checked = False
        self.explained = False
        self.warned: set[str] = set()

    def check_prompts(self, workers, groups: list[PromptGroup]) -> None:
        """Start-up: every rollout worker's engine must run the learner's prompt inputs (first call
        only; a no-op after). `workers`: the run's rollout workers (an iterable of actor handles)."""
        if self.prompts_checked:
            return
        self.prompts_checked = True
        items = [g.item for g in groups[:CHECKED_PROMPTS]]
        handles = list(workers)
        views = ray.get([h.prompt_view.remote([it.inputs for it in items]) for h in handles])
        unexposed = 0
        for w, worker_views in enumerate(views):
            if worker_views is None:  # an engine that runs its own preprocessing out of sight
                unexposed += 1
                continue
            for item, view in zip(items, worker_views, strict=True):
                differs = prompt_differences(view, item)
                if differs:
                    raise ParityError(
                        f"engine/learner parity at start-up: rollout worker {w} and the learner see different "
                        f"inputs for the prompt of row {item.row_id} ({'; '.join(differs)}); the engine's image "
                        "preprocessing (min_pixels/max_pixels, image processor) must be the learner's")
        if unexposed:  # vLLM compares the prompt tokens it ran itself, on every call
            log.info("parity: %d of %d rollout engines (rollout.engine=%s) do not expose their model inputs: "
                     "only their log-probs are checked here", unexposed, len(handles), self.cfg.rollout.engine)

    def check_step(self, step: int, metrics: dict[str, float], why_not: str | None) -> None:
        """After the learner's step: the first comparable step is the start-up check (raises
        `ParityError`), later ones warn once per metric. `why_not`: `incomparable`'s answer."""
        if why_not is not None:
            if not self.explained:
                self.explained = True
                log.info("parity: step %d not compared, nor any like it (%s)", step, why_not)
            return
        if not any(name in metrics for name in THRESHOLDS):  # nothing trained this step
            return
        crossed = crossings(metrics, self.thresholds)
        if not self.logprobs_checked:
            self.logprobs_checked = True
            if crossed:
                raise ParityError(
                    f"engine/learner parity at start-up (step {step}): {'; '.join(crossed)}: the engine and the "
                    "learner do not compute the same log-probs for the same tokens (weights, dtype, model "
                    "inputs); docs/observability.md")
            log.info("parity at start-up (step %d): %s", step,
                     ", ".join(f"{name} {metrics[name]:.3g}" for name in THRESHOLDS if name in metrics))
            return
        for line in crossed:
            name = line.split(" ", 1)[0]
            if name not in self.warned:
                self.warned.add(name)
                log.warning("parity: %s at step %d: the engine and the learner drift apart "
                            "(docs/observability.md)", line, step)
