"""Each row's ground truth, parsed once, in the typed form its task's rewards take: the parsers,
checks and answer writers that each task's record (orchestrator/core/tasks.py) names. Nothing here
branches on a task name; `tasks.parse_ground_truth` and `tasks.perfect_answer` pick by the record.

The papers released their ground truth as strings (docs/sources.md V5, R6), and the rewards in
`verifiers` read typed dicts. Parsing here, once per row and loudly, is what keeps a released
dataset from training on silent zeros (a `solution` the detection reward cannot read scores 0 on
every completion and only shows up as a `verifier/errors` count):

- detection (`parse_detection`): `solution` (else `answer`),
  `<answer>[{'Position': [x1, y1, x2, y2], 'Confidence': 1}, ...]</answer>` →
  `{"boxes": [[x1, y1, x2, y2], ...]}`;
  a negative, `<answer>No Objects</answer>` → `{"boxes": []}`;
- classification: `solution` (else `answer`), `<answer>{class name}</answer>` → `{"answer": name}`;
- grounding (LISA): `solution` (else `answer`), `(x1,y1),(x2,y2)` with or without `<answer>` →
  `{"box": [x1, y1, x2, y2]}`;
- counting, structure: `answer` (else `solution`), `3`, `B`, `2.5` → `{"answer": "3"}`;
- spatial (TRANCE): `answer` (else `solution`), `change_color(2, 'red'), change_size(0, 'small')` →
  `{"answer": "..."}` once at least one `func(object_id, value)` step parses.

An explicit `ground_truth` column (a dict or a JSON string) wins over all of these; for the paper
tasks it is still checked, so a malformed box fails here and not as a reward of 0.

Boxes are xyxy in the 0–1000 frame (Visual-RFT's Qwen2-VL convention); `vrft.orchestrator.core.frames`
converts them for models that answer in another frame. Two normalisations keep every row's maximum
reachable, because the rewards de-duplicate predictions and cannot match a zero-area box: duplicate
ground-truth boxes are dropped (first kept), and a zero-area detection box is an error.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

from vrft.verifiers.answers import extract_answer
from vrft.verifiers.rewards_spatial import extract_items

_NO_OBJECTS = frozenset({"no objects", "no objects.", "[]"})
_POINTS = re.compile(r"\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)\s*,\s*"
                     r"\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)")
_MAX_LITERAL = 200_000  # ast.literal_eval on a longer string is not a box list, and may be slow
PERFECT_THOUGHT = "The ground truth gives the answer."


class GroundTruthError(ValueError):
    """A row's ground truth does not parse for its task. The message names the field and the reason;
    the caller adds the row id."""


def _show(value: Any, limit: int = 80) -> str:
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _inner(text: str) -> str:
    """The stripped `<answer>` content, or the stripped text when it has no tags."""
    inner = extract_answer(text, dotall=True)
    return (text if inner is None else inner).strip()


def read_field(row: dict, names: tuple[str, ...], task: str) -> tuple[str, str]:
    """(field name, text) of the first present, non-empty field among `names`: where a released row
    of `task` keeps its answer."""
    for name in names:
        value = row.get(name)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            kind = type(value).__name__
            raise GroundTruthError(f"field {name!r} of a {task} row must be a string, got {kind}")
        if value.strip():
            return name, value
    raise GroundTruthError(f"a {task} row needs a non-empty {' or '.join(repr(n) for n in names)} field")


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def check_box(box: Any, where: str, allow_empty_area: bool = False) -> list:
    """`box` as a list of 4 finite numbers in [0, 1000] with x1 <= x2 and y1 <= y2 (x1 < x2 and
    y1 < y2 unless `allow_empty_area`), else a GroundTruthError naming `where`."""
    if not isinstance(box, list | tuple) or len(box) != 4 or not all(_number(v) for v in box):
        raise GroundTruthError(f"{where}: a box must be 4 finite numbers [x1, y1, x2, y2], got {_show(box)}")
    x1, y1, x2, y2 = box
    if not all(0 <= v <= 1000 for v in box):
        raise GroundTruthError(f"{where}: box {_show(box)} is outside the 0-1000 frame")
    if x2 < x1 or y2 < y1:
        raise GroundTruthError(f"{where}: box {_show(box)} has x2 < x1 or y2 < y1")
    if not allow_empty_area and (x2 == x1 or y2 == y1):
        raise GroundTruthError(f"{where}: box {_show(box)} has zero area (no prediction can match it)")
    return list(box)


def _dedupe(boxes: list[list]) -> list[list]:
    seen: set[tuple] = set()
    out = []
    for b in boxes:
        if tuple(b) not in seen:
            seen.add(tuple(b))
            out.append(b)
    return out


def parse_detection(text: str, where: str = "solution") -> dict:
    """Visual-RFT's detection solution (arXiv 2503.01785 §3.2; docs/sources.md V5) → `{"boxes": [...]}`
    (Python literals, read with `ast.literal_eval`; never `eval`)."""
    inner = _inner(text)
    if inner.lower() in _NO_OBJECTS:
        return {"boxes": []}
    if len(inner) > _MAX_LITERAL:
        raise GroundTruthError(f"field {where!r}: box list of {len(inner)} characters is too long")
    try:
        data = ast.literal_eval(inner)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        raise GroundTruthError(
            f"field {where!r}: not 'No Objects' nor a list of {{'Position': [...], 'Confidence': c}}: "
            f"{_show(inner)}"
        ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list | tuple):
        raise GroundTruthError(f"field {where!r}: expected a list of boxes, got {_show(inner)}")
    boxes = []
    for i, item in enumerate(data):
        pos = item.get("Position") if isinstance(item, dict) else item
        boxes.append(check_box(pos, f"field {where!r} item {i}"))
    return {"boxes": _dedupe(boxes)}


def parse_grounding(text: str, where: str = "solution") -> dict:
    """LISA's `(x1,y1),(x2,y2)` (with or without `<answer>`) → `{"box": [x1, y1, x2, y2]}` (Visual-RFT's
    reasoning grounding, arXiv 2503.01785 §4.3; docs/sources.md V5)."""
    inner = _inner(text)
    m = _POINTS.fullmatch(inner)
    if m is None:
        raise GroundTruthError(f"field {where!r}: expected '(x1,y1),(x2,y2)', got {_show(inner)}")
    coords = [float(g) if "." in g else int(g) for g in m.groups()]
    return {"box": check_box(coords, f"field {where!r}", allow_empty_area=True)}


def parse_answer(text: str, where: str) -> dict:
    """A released answer string → `{"answer": text}`: the `<answer>` content (or the bare text), which
    the text rewards compare (Visual-RFT classification, docs/sources.md V5; Reason-RFT counting and
    structure, R6)."""
    inner = _inner(text)
    if not inner:
        raise GroundTruthError(f"field {where!r}: the answer is empty")
    return {"answer": inner}


def parse_spatial(text: str, where: str) -> dict:
    """TRANCE's step list → `{"answer": text}` once at least one `func(object_id, value)` step parses
    (Reason-RFT arXiv 2503.20752 §4; docs/sources.md R4, R6)."""
    parsed = parse_answer(text, where)
    items, _ = extract_items(parsed["answer"])
    if not items:
        shown = _show(parsed["answer"])
        raise GroundTruthError(f"field {where!r}: no func(object_id, value) step in {shown}")
    return parsed


def explicit_truth(value: Any) -> dict | None:
    """The `ground_truth` column as a dict (given as a dict or a JSON string), None when absent or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise GroundTruthError(f"field 'ground_truth': not JSON ({e})") from None
    if not isinstance(value, dict):
        raise GroundTruthError(f"field 'ground_truth': expected a dict, got {type(value).__name__}")
    return value


def _boxes_list(gt: dict, message: str) -> list:
    boxes = gt.get("boxes")
    if not isinstance(boxes, list):
        raise GroundTruthError(message)
    return boxes


# ---- explicit ground truth of a paper task: checked for the key its rewards read ----------------------


def check_detection(gt: dict, task: str) -> dict:
    """An explicit detection ground truth: a `boxes` list of valid 0-1000 boxes, duplicates dropped (the
    detection rewards de-duplicate predictions, docs/sources.md V3, so a duplicate could not be matched)."""
    boxes = _boxes_list(gt, f"field 'ground_truth': a {task} ground truth needs a 'boxes' list")
    return {**gt, "boxes": _dedupe([check_box(b, f"field 'ground_truth' box {i}") for i, b in enumerate(boxes)])}


def check_grounding(gt: dict, task: str) -> dict:
    """An explicit grounding ground truth: one valid `box` (a zero-area box allowed, as LISA's boxes
    from polygons can be; docs/sources.md V5)."""
    if "box" not in gt:
        raise GroundTruthError(f"field 'ground_truth': a {task} ground truth needs a 'box'")
    return {**gt, "box": check_box(gt["box"], "field 'ground_truth' box", allow_empty_area=True)}


def check_answer(gt: dict, task: str) -> dict:
    """An explicit text ground truth: a non-empty `answer` (its `<answer>` tags stripped)."""
    ans = gt.get("answer")
    if isinstance(ans, bool) or not isinstance(ans, str | int | float) or not str(ans).strip():
        raise GroundTruthError(f"field 'ground_truth': a {task} ground truth needs a non-empty 'answer'")
    return {**gt, "answer": _inner(str(ans))}


def check_spatial(gt: dict, task: str) -> dict:
    """An explicit TRANCE ground truth: a non-empty `answer` with at least one step."""
    out = check_answer(gt, task)
    parse_spatial(out["answer"], "ground_truth")
    return out


# ---- what a perfect completion answers: the released answer format -------------------------------------


def _fmt(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def detection_answer(ground_truth: dict, task: str) -> str:
    """Visual-RFT's detection answer (docs/sources.md V4, V5): each box with Confidence 1 in the
    single-quoted list form, 'No Objects' for a negative."""
    boxes = _boxes_list(ground_truth, f"ground truth of a {task} row needs 'boxes'")
    if not boxes:
        return "No Objects"
    items = (f"{{'Position': [{', '.join(_fmt(v) for v in b)}], 'Confidence': 1}}" for b in boxes)
    return "[" + ", ".join(items) + "]"


def grounding_answer(ground_truth: dict, task: str) -> str:
    """Visual-RFT's LISA answer `(x1,y1),(x2,y2)` in integers (docs/sources.md V4)."""
    box = ground_truth.get("box")
    if not isinstance(box, list | tuple) or len(box) != 4:
        raise GroundTruthError(f"ground truth of a {task} row needs 'box'")
    if not all(_number(v) and float(v).is_integer() for v in box):
        raise GroundTruthError(f"grounding box {_show(box)} must hold integers (the answer has none)")
    x1, y1, x2, y2 = (int(v) for v in box)
    return f"({x1},{y1}),({x2},{y2})"


def text_answer(ground_truth: dict, task: str) -> str:
    """The answer string as released (a class name, a number, a choice letter; docs/sources.md V5, R6)."""
    ans = ground_truth.get("answer")
    if ans is None:
        raise GroundTruthError(f"ground truth of a {task} row needs 'answer'")
    return _inner(str(ans))


def spatial_answer(ground_truth: dict, task: str) -> str:
    """The TRANCE steps, each stated once: a repeated step would cost the duplicate penalty of
    Reason-RFT's partial-credit score (docs/sources.md R4)."""
    ans = text_answer(ground_truth, task)
    items, penalty = extract_items(ans)
    if penalty < 1.0:
        ans = ", ".join(f"{f}({o}, '{v}')" for f, o, v in items)
    return ans


# ---- the class a row counts toward in a k-shot subset (Visual-RFT's few-shot sets, arXiv 2503.01785 §4) ----

_CATEGORY = re.compile(r"category '([^']+)'")


def answer_class(row: dict, ground_truth: dict) -> str:
    """A classification row's class: its answer (docs/sources.md V5)."""
    return ground_truth["answer"]


def detection_class(row: dict, ground_truth: dict) -> str | None:
    """A detection row's class: the category its prompt asks for (None for a negative, `No Objects`)."""
    if not ground_truth["boxes"]:
        return None
    m = _CATEGORY.search(str(row.get("problem") or ""))
    if m is None:
        raise GroundTruthError("field 'problem' names no category '...'; pass class_column")
    return m.group(1)
