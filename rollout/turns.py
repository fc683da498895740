"""Multi-turn rollouts with image tools: generate until a tool call or the end, run the tool, append
its observation as the next turn (new image tokens included), continue, within `ToolUse`'s turn and
token budgets. Engine-agnostic: an engine gives `continue_contexts` (one turn for each of a batch of
contexts, stopping at its stop tokens); this module keeps the trajectories.

Why token ids are carried and never re-tokenized from text: decoding a turn and encoding the
conversation again need not give the same ids (a BPE merge across the boundary of a turn and the
template's text, a tag split differently), and a learner that scores other ids than the engine
sampled trains on a sequence that was never sampled. Each trajectory is therefore the prompt's ids,
then each turn's sampled ids exactly, then each observation's ids as the chat template renders that
observation alone (`observation_inputs`), and so on.

Every trajectory of every prompt advances together: one `continue_contexts` call per turn for all
the trajectories still running, not a serial loop per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from vrft.plugins import one_line
from vrft.rollout.engine import Completion, SamplingParams
from vrft.rollout.families import family_for_model_type, processor_params
from vrft.rollout.inputs import PromptInputs
from vrft.rollout.tools import (
    TOOL_CALL_CLOSE,
    AnswerFrame,
    Observation,
    Tool,
    View,
    find_tool_call,
    get_tools,
    parse_tool_call,
    run_tool,
)


@dataclass(frozen=True)
class ToolUse:
    """How an engine runs tools: which, in which answer frame, and the budgets."""
    tools: dict[str, Tool]
    frame: AnswerFrame
    max_turns: int = 4  # model turns per trajectory; a call in the last one is not run
    max_total_tokens: int = 1024  # completion tokens over all turns, observations included


@dataclass
class TurnRecord:
    """One model turn, for rewards, alarms and the report: what the model said, the call it made (its
    body), the observation's text, the error kind if the call failed, and which of the trajectory's
    views the observation showed (an index into `Trajectory.views`)."""
    text: str
    call: str | None = None
    tool: str | None = None  # the called tool's name, when the call parsed
    observation: str | None = None
    error: str | None = None
    view: int | None = None
    looked_at: int | None = None  # the view the tool acted on (its observation's source)


@dataclass
class Trajectory:
    """What a multi-turn completion carries beyond a one-turn one (on `Completion.trajectory`).

    `token_mask[i]` is 1 where completion token i was sampled by the model, 0 where it is an
    observation's (the learner's loss and KL skip those); the observations' images are `pixel_values`
    / `image_grid_thw` (in token order, after the prompt's) with `mm_token_type_ids` over the
    completion tokens; `views` are the images shown, the prompt's first, each with its map back to the
    original; `cut_by_turns`: the turn budget ended it while it still called a tool."""
    token_mask: list[int]
    mm_token_type_ids: list[int]
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    views: list[View]
    turns: list[TurnRecord]
    cut_by_turns: bool = False

    @property
    def tool_calls(self) -> int:
        """Calls that were run (a call the budget cut is not: see `cut_by_turns`)."""
        return sum(t.observation is not None for t in self.turns)

    @property
    def tool_errors(self) -> int:
        return sum(t.error is not None for t in self.turns)

    def facts(self) -> dict[str, int | bool]:
        """What rewards may read of the trajectory besides its answer (verifiers/rewards_tools.py)."""
        return {"turns": len(self.turns), "tool_calls": self.tool_calls, "tool_errors": self.tool_errors,
                "cut_by_turns": self.cut_by_turns}


# One turn for each context: (sampled token ids, their log-probs, whether a stop token ended it).
ContinueFn = Callable[[list[PromptInputs], SamplingParams, set[int]], list[tuple[list[int], list[float], bool]]]

_MARK = "\u2063VRFT-TURN\u2063"  # stands for the model's turn while the template renders what follows it


def observation_inputs(processor: Any, observation: Observation) -> PromptInputs:
    """The tokens that follow a model turn ending in a tool call, up to the next assistant turn's
    start, as the model's own chat template renders a `tool` message with the observation (an image
    and its text, or text): the template's end of the model's turn, the observation turn, and the
    generation prompt. Rendered around a marker and cut after it, so nothing of the template is
    written here, and processed alone, so the ids before it are never touched."""
    content: list[dict[str, Any]] = [{"type": "image"}] if observation.view is not None else []
    content.append({"type": "text", "text": observation.text})
    messages = [{"role": "user", "content": [{"type": "text", "text": "."}]},
                {"role": "assistant", "content": [{"type": "text", "text": _MARK}]},
                {"role": "tool", "content": content}]
    rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if rendered.count(_MARK) != 1:
        raise ValueError("the chat template does not render an assistant turn's text as given")
    segment = rendered.split(_MARK, 1)[1]
    images = [observation.view.image.convert("RGB")] if observation.view is not None else None
    encoded = processor(text=[segment], images=images, return_tensors="pt")
    ids = encoded["input_ids"][0].tolist()
    if images is None:
        return PromptInputs(input_ids=ids, mm_token_type_ids=[0] * len(ids))
    mm = encoded.get("mm_token_type_ids")
    mm_ids = [int(t == processor.image_token_id) for t in ids] if mm is None else [int(v) for v in mm[0].tolist()]
    return PromptInputs(ids, encoded["pixel_values"].to(torch.float32), encoded["image_grid_thw"].to(torch.long),
                        mm_ids, images)


def usage(trajectories: Sequence[Trajectory | None]) -> dict[str, float]:
    """How the tools were used, per trajectory (one-turn completions, None, are left out): turns,
    calls run, the share that called at all, errors, the share the turn budget cut, and calls per
    tool (`tool_calls/<tool>`). Empty when there is no trajectory."""
    runs = [t for t in trajectories if t is not None]
    if not runs:
        return {}
    n = len(runs)
    per_tool: dict[str, int] = {}
    for turn in (turn for t in runs for turn in t.turns if turn.tool is not None):
        per_tool[turn.tool] = per_tool.get(turn.tool, 0) + 1
    return {"turns_mean": sum(len(t.turns) for t in runs) / n,
            "tool_calls_mean": sum(t.tool_calls for t in runs) / n,
            "tool_call_rate": sum(t.tool_calls > 0 for t in runs) / n,
            "tool_errors": float(sum(t.tool_errors for t in runs)),
            "cut_by_turns_frac": sum(t.cut_by_turns for t in runs) / n,
            **{f"tool_calls/{name}": count / n for name, count in sorted(per_tool.items())}}


def called_tool(body: str | None) -> str | None:
    try:
        return parse_tool_call(body).name if body is not None else None
    except ValueError:
        return None


def acted_on(body: str, shown: int) -> int:
    """Which of the `shown` views a (successful) call acted on: its `image` argument, else the last."""
    index = parse_tool_call(body).arguments.get("image", shown - 1)
    return index % shown if isinstance(index, int) and not isinstance(index, bool) else shown - 1


@dataclass
class _Running:
    """One trajectory while it runs: its context so far (prompt + completion) and what it collected."""
    prompt: PromptInputs
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    mm: list[int] = field(default_factory=list)
    pixels: list[torch.Tensor] = field(default_factory=list)
    grids: list[torch.Tensor] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    stopped: bool = False
    cut_by_turns: bool = False

    def context(self) -> PromptInputs:
        p = self.prompt
        mm = (p.mm_token_type_ids or [0] * len(p.input_ids)) + self.mm
        pixels = ([p.pixel_values] if p.pixel_values is not None else []) + self.pixels
        grids = ([p.image_grid_thw] if p.image_grid_thw is not None else []) + self.grids
        return PromptInputs(p.input_ids + self.ids, torch.cat(pixels) if pixels else None,
                            torch.cat(grids) if grids else None, mm, [v.image for v in self.views])


def sample_with_tools(continue_contexts: ContinueFn, processor: Any, tokenizer: Any, prompts: Sequence[PromptInputs],
                      sampling: SamplingParams, stop_ids: set[int], use: ToolUse, policy_version: int,
                      ) -> list[list[Completion]]:
    """`sampling.n` trajectories per prompt (prompt-major, as `Engine.generate`), each a `Completion`
    whose `trajectory` holds its mask, observation images and turns. `sampling.max_new_tokens` bounds
    each model turn; `use.max_total_tokens` the whole completion."""
    close = tokenizer.convert_tokens_to_ids(TOOL_CALL_CLOSE)
    if not isinstance(close, int) or close == tokenizer.unk_token_id or close in (None, -1):
        raise ValueError(f"tools need {TOOL_CALL_CLOSE!r} to be one token of the tokenizer")
    runs = [_Running(p, views=[View(im) for im in p.images]) for p in prompts for _ in range(sampling.n)]
    one = SamplingParams(n=1, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                         max_new_tokens=sampling.max_new_tokens)
    seed = sampling.seed
    for turn in range(use.max_turns):
        active = [r for r in runs if not r.stopped]
        if not active:
            break
        room = max(use.max_total_tokens - len(r.ids) for r in active)
        # each turn its own seed (an engine spaces its rows from it), so turns do not repeat draws
        step = SamplingParams(**{**one.__dict__, "max_new_tokens": max(1, min(one.max_new_tokens, room)),
                                 "seed": None if seed is None else (seed + turn * 1_000_003) % 2**31})
        outputs = continue_contexts([r.context() for r in active], step, stop_ids | {close})
        for run, (ids, logprobs, stopped) in zip(active, outputs, strict=True):
            left = use.max_total_tokens - len(run.ids)
            ids, logprobs = ids[:left], logprobs[:left]
            run.ids += ids
            run.logprobs += logprobs
            run.mask += [1] * len(ids)
            run.mm += [0] * len(ids)
            text = tokenizer.decode(ids, skip_special_tokens=True)
            record = TurnRecord(text)
            run.turns.append(record)
            calls = stopped and bool(ids) and ids[-1] == close
            if not calls:  # the end (a stop token, or out of tokens)
                run.stopped = True
                continue
            record.call = find_tool_call(text) or ""  # a turn that closes a call calls, however malformed
            record.tool = called_tool(record.call)
            if turn + 1 == use.max_turns:  # a call the budget leaves no turn to answer after
                run.stopped = run.cut_by_turns = True
                continue
            observation = run_tool(record.call, run.views, use.frame, use.tools)
            try:
                segment = observation_inputs(processor, observation)
            except Exception as e:  # noqa: BLE001 - a view the processor refuses is the tool's failure
                observation = Observation(f"error: the tool's result cannot be shown: {one_line(repr(e), 200)}",
                                          error="tool_failed")
                segment = observation_inputs(processor, observation)
            record.observation, record.error = observation.text, observation.error
            if len(run.ids) + len(segment.input_ids) >= use.max_total_tokens:
                run.stopped = run.cut_by_turns = True  # no room for the observation and an answer
                continue
            run.ids += segment.input_ids
            run.logprobs += [0.0] * len(segment.input_ids)
            run.mask += [0] * len(segment.input_ids)
            run.mm += segment.mm_token_type_ids or [0] * len(segment.input_ids)
            if segment.pixel_values is not None:
                run.pixels.append(segment.pixel_values)
                run.grids.append(segment.image_grid_thw)
                run.views.append(observation.view)
                record.view = len(run.views) - 1
                record.looked_at = acted_on(record.call, len(run.views) - 1)
    groups: list[list[Completion]] = []
    for row, run in enumerate(runs):
        if row % sampling.n == 0:
            groups.append([])
        last = run.turns[-1] if run.turns else TurnRecord("")
        ended = bool(run.ids) and run.mask[-1] == 1 and run.ids[-1] in stop_ids
        trajectory = Trajectory(run.mask, run.mm, torch.cat(run.pixels) if run.pixels else None,
                                torch.cat(run.grids) if run.grids else None, run.views, run.turns, run.cut_by_turns)
        groups[-1].append(Completion(sample_index=row % sampling.n, text=last.text, token_ids=run.ids,
                                     logprobs=run.logprobs, finish_reason="stop" if ended else "length",
                                     policy_version=policy_version, trajectory=trajectory))
    return groups


def teacher_forced(processor: Any, tokenizer: Any, prompt: PromptInputs, turns: Sequence[str], use: ToolUse,
                   end_id: int) -> Completion:
    """The trajectory of a written tool-use trace (SFT on tool use): each model turn tokenized on its
    own (the last one closed by `end_id`), the tools run on the calls, and the observations between
    turns exactly as sampling would put them (`sample_with_tools` with the turns as the engine)."""
    scripted = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in turns]
    scripted[-1] = scripted[-1] + [end_id]
    done = 0

    def replay(contexts, sampling, stop_ids):
        nonlocal done
        ids = scripted[done]
        done += 1
        return [(ids, [0.0] * len(ids), ids[-1] in stop_ids)]

    budget = ToolUse(use.tools, use.frame, max_turns=len(turns),
                     max_total_tokens=sum(map(len, scripted)) + 4096)  # the trace decides its own length
    [[completion]] = sample_with_tools(replay, processor, tokenizer, [prompt], SamplingParams(n=1),
                                       {end_id}, budget, policy_version=0)
    if done != len(turns) or completion.trajectory.tool_errors:
        raise ValueError(f"a tool trace does not replay: {done} of {len(turns)} turns ran, "
                         f"{completion.trajectory.tool_errors} tool errors")
    return completion


def tool_use(model_type: str, processor, options: dict) -> ToolUse:
    """The engine's `ToolUse` from the config's `rollout.tools` section: the tools by name, and the
    answer frame of the model's family with the processor's own resize settings (a crop is resized
    by them before the model sees it)."""
    family = family_for_model_type(model_type)
    override = options.get("answer_frame")
    if family is None and override is None:
        raise ValueError(f"tools: unknown model family {model_type!r}; set rollout.tools.answer_frame")
    frame = AnswerFrame.of_family(family.name, **processor_params(processor)) if family else AnswerFrame(override)
    if override is not None and family is not None:
        frame = AnswerFrame(override, frame.factor, frame.min_pixels, frame.max_pixels)
    return ToolUse(get_tools(options.get("names", [])), frame, int(options.get("max_turns", 4)),
                   int(options.get("max_total_tokens", 1024)))
