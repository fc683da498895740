"""A benchmark item's ground truth read from one of its data rows, in the form the benchmark's scorer
takes (``vrft.verifiers.evaluation.benchmarks``): how a row is read is part of the protocol, so it lives
beside the metric; the evaluation driver only loads rows and hands them here.

What needs the orchestrator (decoding an image, parsing a training row's ``solution``) comes in as a
``RowReaders`` of plain functions: this package imports nothing of the orchestrator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vrft.verifiers.answers import extract_answer
from vrft.verifiers.evaluation.benchmarks import Benchmark


@dataclass(frozen=True)
class RowReaders:
    """``image_size(row) -> (width, height)`` (a ValueError when the image does not decode);
    ``solution_box(text) -> [x1, y1, x2, y2]`` of a grounding solution in the 0–1000 frame
    (a ValueError when it is not one)."""

    image_size: Callable[[dict], tuple[int, int]]
    solution_box: Callable[[str], list[float]]


def images_of(row: dict) -> list:
    raw = row.get("image")
    return raw if isinstance(raw, list) else ([] if raw is None else [raw])


def text_answer(row: dict, where: str, scoring: str = "strict") -> str:
    """The item's answer: under strict scoring the stripped `<answer>` content of its first answer
    field (or the field stripped); under paper scoring a released row's `answer` exactly as it is, as
    Reason-RFT's script compares it (its exact match does not strip the solution)."""
    if scoring == "paper" and isinstance(row.get("answer"), str) and row["answer"].strip():
        return row["answer"]
    for name in ("answer", "solution", "label"):
        value = row.get(name)
        if value is not None and str(value).strip():
            inner = extract_answer(str(value), dotall=True)
            return (str(value) if inner is None else inner).strip()
    raise ValueError(f"{where}: no 'answer', 'solution' or 'label' field")


def lisa_truth(row: dict, where: str, readers: RowReaders, scoring: str = "paper") -> dict:
    """The LISA script's ground truth: the box in the image's pixels and the image size, and the
    ground-truth mask where the row has one (gIoU / cIoU).

    A row of `vrft prepare-data lisa` (it has `box_px`): under paper scoring `box_px`, `shapes[0]`'s
    float pixel box as gen_box_ann.py writes it; under strict scoring vrft's `solution` (the first
    polygon not labelled ignore, truncated to the 0–1000 frame) scaled back by the image's size. Any
    other grounding row (a `solution` in the 0–1000 frame) is read the strict way under both."""
    try:
        if row.get("box_px") is not None:
            w, h = int(row["width"]), int(row["height"])
        else:
            w, h = readers.image_size(row)
        if row.get("box_px") is not None and scoring == "paper":
            box = [float(v) for v in row["box_px"]]
        else:
            x1, y1, x2, y2 = readers.solution_box(str(row.get("solution") or row.get("answer") or ""))
            box = [x1 * w / 1000, y1 * h / 1000, x2 * w / 1000, y2 * h / 1000]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from None
    truth = {"box": box, "width": w, "height": h}
    if row.get("mask") is not None:
        truth["mask"] = row["mask"]
    return truth


def is_item(b: Benchmark, row: dict, scoring: str) -> bool:
    """Whether a row is an item of the benchmark under `scoring`. LISA under paper scoring: the image's
    first instruction only (gen_box_ann.py reads `instruction[0]`); under strict scoring every
    instruction, but not an image whose every polygon is labelled ignore (vrft's reading skips it)."""
    if b.kind != "lisa":
        return True
    if scoring == "paper":
        return int(row.get("instruction_index") or 0) == 0
    return not row.get("only_ignore_shapes")


def item_truth(b: Benchmark, row: dict, where: str, scoring: str, readers: RowReaders) -> Any:
    """The ground truth of one row of a row-per-item benchmark (classification, LISA, Reason-RFT)."""
    if b.kind == "lisa":
        return lisa_truth(row, where, readers, scoring)
    return text_answer(row, where, scoring if b.kind in ("answer", "trance") else "strict")
