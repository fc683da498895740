"""Prompts from a dataset: each row read as released, its ground truth parsed for its task and put
into the model's answer frame, its prompt templated and tokenised once, in a resumable order.

    rows = load_rows(data.path)                      sources.py: hub id, save_to_disk, JSON/JSONL meta
    reader = RowReader(cfg, processor)               the task, frame and template of every row
    view = reader.read(rows[i], i)                   RowView: task, typed ground truth, prompt, images
    PromptSource(cfg, processor).next_batch(k)       PromptItems (model inputs built once)

A row whose image cannot be decoded is skipped and counted (its id kept for the run log), and so is
a row whose prompt text or SFT target spells out a special token or image placeholder (a literal
`<|image_pad|>` would become an image token and mis-align the images: `RowView.skip`); a row
whose ground truth, task or prompt cannot be read is a `RowError` naming the row and the field:
never a reward of 0.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import numpy as np

from vrft.orchestrator.config.schema import TrainConfig
from vrft.orchestrator.core.frames import answer_frame, model_family, resized_size
from vrft.orchestrator.core.ground_truth import GroundTruthError
from vrft.orchestrator.core.records import PromptItem
from vrft.orchestrator.core.tasks import (
    Task,
    answer_text,
    find_task,
    paper_name,
    parse_ground_truth,
    task_key,
)
from vrft.orchestrator.core.templates import render_prompt, sft_target
from vrft.orchestrator.data.sources import decode_image, load_rows
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import placeholder_in_text
from vrft.rollout.tools import get_tools

log = logging.getLogger("vrft")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


class RowError(ValueError):
    """A row that cannot train: the message names the row and the field."""


@dataclass
class RowView:
    row_id: str
    task: str | None  # the task key (paper task, or the user's own); None: one run-wide reward set
    ground_truth: dict  # typed, in the model's answer frame
    problem: str
    images: list | None  # PIL images; None when one could not be decoded (skip and count)
    sft_target: str | None
    skip: str | None = None  # why the row cannot train although it reads (skip and count)


def row_id(row: dict, index: int) -> str:
    value = row.get("id")
    return str(value) if value is not None and str(value) != "" else str(index)


def _generic_truth(row: dict) -> dict:
    """No task named: the `ground_truth` column, else the `<answer>` content of `solution`."""
    gt = row.get("ground_truth")
    if isinstance(gt, dict):
        return gt
    if isinstance(gt, str) and gt:
        return json.loads(gt)
    solution = row.get("solution") or row.get("answer") or ""
    match = _ANSWER.search(str(solution))
    return {"answer": (match.group(1) if match else str(solution)).strip()}


class RowReader:
    """What `vrft train` and `vrft check-data` both do to a row (so the check checks the real path)."""

    def __init__(self, cfg: TrainConfig, processor=None, frame: str | None = None):
        self.cfg, self.processor = cfg, processor
        self.default_task = cfg.data.task
        template = cfg.data.template  # a dict is keyed by task: by its paper task, as rows route
        self.template = {paper_name(k): v for k, v in template.items()} if isinstance(template, dict) \
            else template
        self.frame = frame or resolve_frame(cfg)
        self.sft_mode = cfg.sft.target

    def task_of(self, row: dict, rid: str) -> str | None:
        task = row.get("task") or self.default_task
        if task is None:
            return None
        try:
            return task_key(str(task), custom=self.cfg.custom_tasks())
        except ValueError as err:
            raise RowError(f"row {rid}: column 'task': {err}") from None

    def read(self, row: dict, index: int, decode: bool = True) -> RowView:
        rid = row_id(row, index)
        task = self.task_of(row, rid)
        try:
            gt = parse_ground_truth(row, task) if task is not None else _generic_truth(row)
        except (GroundTruthError, ValueError) as err:
            raise RowError(f"row {rid}: {err}") from None
        # Reason-RFT's released `problem` is the bare question its task template wraps ({question});
        # Visual-RFT's is the whole prompt. So a template, when set, renders every row.
        problem = row.get("problem")
        template = self.template.get(task or "") if isinstance(self.template, dict) else self.template
        if template is not None:
            try:
                problem = render_prompt(template, row)
            except ValueError as err:
                raise RowError(f"row {rid}: {err}") from None
        elif not isinstance(problem, str) or not problem.strip():
            raise RowError(f"row {rid}: column 'problem' is missing or empty (or set data.template)")
        raw = row.get("image")
        raws = raw if isinstance(raw, list) else ([] if raw is None else [raw])
        record = find_task(task)
        if not raws and record is not None:  # every paper task is about an image
            raise RowError(f"row {rid}: column 'image' is missing or empty (a {task} row needs an image)")
        # boxes in the resized image's pixels need the image's size
        needs_size = record is not None and record.to_frame is not None and self.frame == "resized_pixels"
        images = [decode_image(r) for r in raws] if (decode or needs_size) else None
        if images is not None and any(img is None for img in images):
            return RowView(rid, task, gt, problem, None, None)
        if needs_size:
            gt = self._to_frame(gt, record, images, rid)
        view = RowView(rid, task, gt, problem, images, self._sft_target(row, task, gt, rid))
        # The tokenizer would turn a literal special token in the text into the real token: an
        # image placeholder too many for the images (NeMo-RL's media-token validity mask), or chat
        # structure inside a question or an SFT target.
        tokenizer = getattr(self.processor, "tokenizer", None)
        for name, text in (("prompt", view.problem), ("SFT target", view.sft_target)):
            found = placeholder_in_text(text, tokenizer)
            if found is not None:
                view.skip = f"its {name} holds the literal {found!r}"
                break
        return view

    def _sft_target(self, row: dict, task: str | None, gt: dict, rid: str) -> str | None:
        """The SFT target: Reason-RFT's CoT-SFT `<think>\n{cot}\n</think>\n<answer>\n{answer}\n</answer>`
        when the row carries an `answer` beside its `cot` (its released JSON), the `cot` as given
        without an `answer`, or (`sft.target: answer`, ANS-SFT) the answer alone."""
        if self.sft_mode == "solution":
            solution = row.get("solution")
            if not solution:
                raise RowError(f"row {rid}: sft.target is solution but column 'solution' is empty")
            return str(solution)
        answer = row.get("answer")
        try:
            final = answer_text(task, gt) if find_task(task) is not None else None if answer is None else str(answer)
        except ValueError as err:
            raise RowError(f"row {rid}: {err}") from None
        if self.sft_mode == "answer":
            return final
        cot = row.get("cot")
        if not cot:
            return None
        if answer is None:
            return cot
        try:
            return sft_target(cot, final)
        except ValueError as err:
            raise RowError(f"row {rid}: {err}") from None

    def _to_frame(self, gt: dict, record: Task, images: list, rid: str) -> dict:
        if len(images) != 1:
            raise RowError(f"row {rid}: column 'image': a {record.name} row needs exactly one image, "
                           f"got {len(images)}")
        size = images[0].size
        return record.to_frame(gt, size, resized_size(size[0], size[1], self.processor), self.frame)


def resolve_frame(cfg: TrainConfig) -> str:
    """The frame the model answers boxes in: `data.frame`, else its family's (frames.py)."""
    if cfg.data.frame != "auto":
        return cfg.data.frame
    try:
        return answer_frame(model_family(cfg.model.path))
    except (ValueError, OSError) as err:
        raise ValueError(f"data.frame: {err}") from None


class PromptSource:
    """Endless epochs over the dataset in a seeded order; `state()` makes the position resumable."""

    def __init__(self, cfg: TrainConfig, processor, rows: slice | None = None):
        """`rows`: a slice of the data in file order (Reason-RFT: SFT on the first 1,600 rows, GRPO on
        the rest)."""
        dc = cfg.data
        self.dataset = load_rows(dc.path, split=dc.split, config_name=dc.config_name, image_root=dc.image_root)
        if rows is not None:
            picked = range(len(self.dataset))[rows]
            if not picked:
                raise ValueError(f"data: rows {rows.start}:{rows.stop} of {dc.path} hold none of its "
                                 f"{len(self.dataset)} rows")
            self.dataset = self.dataset.select(picked)
        self.max_prompt_length = dc.max_prompt_length
        self.reader = RowReader(cfg, processor)
        self.processor, self.seed, self.shuffle = processor, cfg.run.seed, dc.shuffle
        self.system_prompt = dc.system_prompt
        tools = cfg.rollout.tools
        self.tool_schemas = [t.schema() for t in get_tools(tools.names).values()] if tools else None
        self.epoch, self.position, self.skipped, self.skipped_long = 0, 0, 0, 0
        self.skipped_text = 0  # rows whose text spells out a special token or placeholder
        self.skipped_ids: list[str] = []
        self._order = self._make_order()

    def _make_order(self) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    def _advance(self) -> int:
        if self.position >= len(self._order):
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._make_order()
        index = int(self._order[self.position])
        self.position += 1
        return index

    def build(self, index: int) -> PromptItem | None:
        row = self.dataset[index]
        view = self.reader.read(row, index)
        if view.images is None:
            self.skipped += 1
            if len(self.skipped_ids) < 10:
                self.skipped_ids.append(view.row_id)
            log.warning("row %s: an image could not be decoded; skipped (%d so far)", view.row_id, self.skipped)
            return None
        if view.skip is not None:
            self.skipped_text += 1
            log.warning("row %s: %s; skipped (%d so far)", view.row_id, view.skip, self.skipped_text)
            return None
        inputs = build_prompt_inputs(self.processor, view.problem, view.images, self.system_prompt,
                                     self.tool_schemas)
        if self.max_prompt_length and len(inputs.input_ids) > self.max_prompt_length:
            # The papers' trainers cut the ids on the left, which would drop image tokens and break
            # the vision input: the row is skipped and counted instead.
            self.skipped_long += 1
            log.warning("row %s: prompt of %d tokens > data.max_prompt_length; skipped", view.row_id,
                        len(inputs.input_ids))
            return None
        return PromptItem(row_id=view.row_id, inputs=inputs, ground_truth=view.ground_truth,
                          task=view.task, cot=view.sft_target, trace=self._trace(row, view.row_id))

    def _trace(self, row: dict, row_id: str) -> list[str] | None:
        """A row's `tool_trace` (a JSON list of the model's turns), read when the run has tools."""
        if self.tool_schemas is None or not row.get("tool_trace"):
            return None
        try:
            turns = json.loads(row["tool_trace"])
        except ValueError as e:
            raise ValueError(f"row {row_id}: column tool_trace is not JSON ({e})") from None
        if not isinstance(turns, list) or len(turns) < 1 or not all(isinstance(t, str) for t in turns):
            raise ValueError(f"row {row_id}: column tool_trace must be a JSON list of the model's turns")
        return turns

    def next_batch(self, k: int) -> list[PromptItem]:
        items: list[PromptItem] = []
        attempts = 0
        while len(items) < k:
            attempts += 1
            if attempts > k + len(self.dataset):
                raise RuntimeError("no decodable samples left in the dataset")
            item = self.build(self._advance())
            if item is not None:
                items.append(item)
        return items

    def state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "skipped": self.skipped,
                "skipped_long": self.skipped_long, "skipped_text": self.skipped_text}

    def load_state(self, state: dict) -> None:
        self.epoch, self.position, self.skipped = state["epoch"], state["position"], state["skipped"]
        self.skipped_long = state.get("skipped_long", 0)
        self.skipped_text = state.get("skipped_text", 0)
        self._order = self._make_order()
