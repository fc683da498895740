"""The record one prompt group travels in, from collection to the learner's batch and the metrics.

    collect_and_score (step.py)   creates a PromptGroup per prompt: its item and G ScoredCompletions
                                  with the verifiers' scores
    shape_rewards                 sets each completion's reward (scores["total"] + DAPO's overlong term)
    select_groups                 marks the groups that train (all, or those DAPO's dynamic sampling keeps)
    build_batch                   turns the kept groups into learner Samples (`to_sample`)
    LearnerGroup.train_step       computes the advantages; `record_advantages` copies them back
    reward_metrics / step metrics read the groups; nothing rebuilds them from keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vrft.learner import Sample
from vrft.rollout.engine import Completion
from vrft.rollout.inputs import PromptInputs
from vrft.rollout.turns import Trajectory


@dataclass
class PromptItem:
    """One dataset row, built once: model inputs, typed ground truth, task, SFT target."""
    row_id: str  # the dataset row it came from (index or the row's own id), for logs and records
    inputs: PromptInputs
    ground_truth: dict
    task: str | None = None
    cot: str | None = None
    trace: list[str] | None = None  # SFT on tool use: the model's turns of a written trajectory


@dataclass
class ScoredCompletion:
    completion: Completion
    scores: dict[str, float] = field(default_factory=dict)  # each reward component and "total"
    reward: float = 0.0  # what the advantage is computed from: the total plus any shaping
    advantage: float = 0.0  # the learner's (0 for a group that did not train)


@dataclass
class PromptGroup:
    item: PromptItem
    completions: list[ScoredCompletion]
    kept: bool = True  # trains this step (dynamic sampling drops groups whose rewards are all equal)

    @property
    def policy_version(self) -> int:
        """The oldest policy version among its completions (one engine call: all the same)."""
        return min(c.completion.policy_version for c in self.completions)

    @property
    def rewards(self) -> list[float]:
        return [c.reward for c in self.completions]


def to_sample(inputs: PromptInputs, completion_ids: list[int], trajectory: Trajectory | None = None,
              **fields) -> Sample:
    """The learner's view of prompt + completion: the one place prompt inputs become a `Sample`
    (GRPO batches and SFT alike). `trajectory`: a multi-turn completion's mask and observation images
    (rollout/turns.py). `fields`: the other `Sample` fields (reward, group_id, ...)."""
    if trajectory is not None:
        fields.update(completion_mask=trajectory.token_mask, completion_pixel_values=trajectory.pixel_values,
                      completion_image_grid_thw=trajectory.image_grid_thw,
                      completion_mm_token_type_ids=trajectory.mm_token_type_ids)
    return Sample(prompt_ids=inputs.input_ids, completion_ids=completion_ids,
                  pixel_values=inputs.pixel_values, image_grid_thw=inputs.image_grid_thw,
                  prompt_mm_token_type_ids=inputs.mm_token_type_ids, **fields)
