"""Prompts from a Hugging Face dataset: decoded, templated and tokenised once, in a resumable order.

Columns: `image` (one image or a list), `problem`, `ground_truth` (a dict or its JSON; else derived
from `solution`, Visual-RFT's `<answer>…</answer>` string), optional `task` and `cot` (Reason-RFT's
chain-of-thought target for SFT). A sample whose image cannot be decoded is skipped and counted.
"""

from __future__ import annotations

import json
import re

import numpy as np

from orchestrator.records import PromptItem
from orchestrator.sources import decode_image, load_task_dataset
from rollout.inputs import build_prompt_inputs

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def parse_ground_truth(row: dict) -> dict:
    gt = row.get("ground_truth")
    if isinstance(gt, dict):
        return gt
    if isinstance(gt, str) and gt:
        return json.loads(gt)
    solution = row.get("solution") or ""
    match = _ANSWER.search(solution)
    return {"answer": (match.group(1) if match else solution).strip()}


class PromptSource:
    """Endless epochs over the dataset in a seeded order; `state()` makes the position resumable."""

    def __init__(self, path: str, processor, seed: int, shuffle: bool = True,
                 system_prompt: str | None = None):
        self.dataset = load_task_dataset(path)
        self.processor, self.seed, self.shuffle = processor, seed, shuffle
        self.system_prompt = system_prompt
        self.epoch, self.position, self.skipped = 0, 0, 0
        if len(self.dataset) == 0:
            raise ValueError(f"dataset {path} is empty")
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
        raw = row.get("image")
        raws = raw if isinstance(raw, list) else ([] if raw is None else [raw])
        images = [decode_image(r) for r in raws]
        if any(img is None for img in images):
            self.skipped += 1
            return None
        inputs = build_prompt_inputs(self.processor, row["problem"], images, self.system_prompt)
        return PromptItem(row_id=str(row.get("id", index)), inputs=inputs, ground_truth=parse_ground_truth(row),
                          task=row.get("task"), cot=row.get("cot"))

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
        return {"epoch": self.epoch, "position": self.position, "skipped": self.skipped}

    def load_state(self, state: dict) -> None:
        self.epoch, self.position, self.skipped = state["epoch"], state["position"], state["skipped"]
        self._order = self._make_order()
