"""`logging.alarms`: the threshold of each reward-hacking alarm (orchestrator/observe/alarms.py) and
of the engine/learner parity checks (orchestrator/train/parity.py), and what crossing one means.
Here, in the config layer, because the run config holds them; the alarms themselves sit above."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The length drift is two-sided (answers that balloon or collapse): a threshold t is crossed above t or
# below 1/t. Too few boxes is a weak model, too many the hack (each one buys matches and confidence terms).
TWO_SIDED = ("answer_length_drift",)
# The alarms that are shares of the completions (or of their answers or boxes): a warning needs the
# share's lower confidence bound past the threshold, not the share alone (alarms.py).
SHARES = ("empty_answer", "multi_class", "format_only", "tags_in_answer", "full_image_boxes", "truncated",
          "tool_spam", "never_looking")


class AlarmThresholds(BaseModel):
    """`logging.alarms`: the value at which each alarm logs its warning (null: never warns)."""
    model_config = ConfigDict(extra="forbid")
    empty_answer: float | None = Field(0.2, ge=0, description="share of completions with an empty answer")
    multi_class: float | None = Field(0.1, ge=0, description="classification: share of answers naming a "
                                      "list of classes")
    format_only: float | None = Field(0.8, ge=0, description="high early in a run by nature: warn only "
                                      "when nearly every completion is paid for its format alone")
    tags_in_answer: float | None = Field(0.05, ge=0, description="share of answers holding a <think>/<answer> "
                                         "tag themselves")
    box_count_ratio: float | None = Field(3.0, gt=0, description="predicted / ground-truth boxes")
    full_image_boxes: float | None = Field(0.2, ge=0, description="share of predicted boxes covering 90% "
                                          "of the image or more")
    truncated: float | None = Field(0.3, ge=0, description="share of completions cut at max_new_tokens")
    answer_length_drift: float | None = Field(3.0, gt=1, description="answer length against the first "
                                              "steps', above t or below 1/t")
    # Multi-turn rollouts with tools (rollout.tools)
    tool_spam: float | None = Field(0.5, ge=0, description="share of trajectories the turn budget cut "
                                    "while they still called tools")
    invalid_calls: float | None = Field(0.5, ge=0, description="share of tool calls that failed")
    never_looking: float | None = Field(0.95, ge=0, description="share of trajectories with no tool call "
                                        "(tools on, and the model ignores them)")
    # When a warning may fire at all: a share over a few dozen completions of a run's first steps is
    # noise (the CPU demo's 64 completions at step 1 "crossed" tags_in_answer), not a hack.
    warmup_steps: int = Field(5, ge=0, description="steps before any reward-hacking alarm may warn "
                              "(the values are logged from step 1 all the same)")
    min_samples: int = Field(128, ge=1, description="completions a warning must rest on: a task's latest "
                             "steps are pooled (weighted by their completions) until they cover this many; a "
                             "share then warns when its 95% lower bound (Wilson) crosses the threshold")
    # Engine/learner parity (orchestrator/train/parity.py): crossed at start-up, the run stops; later, a warning.
    parity_logprob_kl: float | None = Field(0.02, ge=0, description="parity/logprob_kl: KL(engine || learner) "
                                            "per token (fp32 on both sides: 0 to rounding)")
    parity_max_abs_logprob_diff: float | None = Field(None, gt=0, description="parity/max_abs_logprob_diff; "
                                                      "off by default: bf16's largest per-token gap is heavy-"
                                                      "tailed (fp32 on both sides: 1e-3 is safe)")


def crossed(name: str, value: float, threshold: float | None) -> bool:
    if threshold is None:
        return False
    if name in TWO_SIDED:
        return value > threshold or value < 1 / threshold
    return value > threshold
