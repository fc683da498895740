"""Prompt templates of the papers' tasks, by name, and the Reason-RFT SFT target.

A dataset without a `problem` text of its own gets its prompt from a named template (a config key
picks the name). The papers' models were trained on these exact strings, so they are kept verbatim
from docs/sources.md V4 and R5 (typos included: "grouding", the stray ")" of the LISA prompt, the
missing space in "tags.The"), except where marked otherwise:

- `visual_rft/detection` ({category}), `visual_rft/classification` ({kind}, {what}), `visual_rft/lisa`
  ({instruction}): Visual-RFT, used in training without a system prompt.
- `reason_rft/counting`, `reason_rft/structure`, `reason_rft/spatial` ({question}, read from the row's
  `question` or else its `problem`): Reason-RFT's CoT/RL question templates. `reason_rft/structure`
  picks its multiple-choice or number variant per row from the row's answer, as the paper's code does
  (`answer in ['A', 'B', 'C', 'D']`).
- `reason_rft/counting_zero_shot`: the zero-shot evaluation prompt of counting.
- `r1/system`: the R1 system prompt Visual-RFT adds at evaluation (no fields).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

from vrft.verifiers.answers import extract_answer

DETECTION = (
    "Detect all objects belonging to the category '{category}' in the image, and provide the bounding "
    "boxes (between 0 and 1000, integer) and confidence (between 0 and 1, with two decimal places).\n"
    "If no object belonging to the category '{category}' in the image, return 'No Objects'.\n"
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "The output answer format should be as follows:\n"
    "<think> ... </think> <answer>[{{'Position': [x1, y1, x2, y2], 'Confidence': number}}, ...]</answer>\n"
    "Please strictly follow the format."
)
# Verified for aircraft ("an aircraft", "model"); plant and pet use "species". The Cars wording is
# UNVERIFIED (docs/sources.md V4); the answer placeholder is "species name" for every kind in the code.
CLASSIFICATION = (
    "This is an image containing {article} {kind}. Please identify the {what} of the {kind} based on the "
    "image.\n"
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "The output answer format should be as follows:\n"
    "<think> ... </think> <answer>species name</answer>\n"
    "Please strictly follow the format."
)
LISA = (
    "Output the bounding box in the image corresponding to the instruction: {instruction}"
    " Output the thinking process in <think> </think> and your grouding box. Following "
    "\"<think> thinking process </think>\n<answer>(x1,y1),(x2,y2)</answer>)\" format."
)
COUNTING = (
    "{question} Output the thinking process in <think> </think> and final answer (number) in "
    "<answer> </answer> tags."
)
COUNTING_ZERO_SHOT = (
    "Please answer in Arabic numerals. For example, if the answer is 3, please respond with 3. {question}"
)
STRUCTURE_CHOICE = (
    "{question} Please select the correct answer by writing the letter (A, B, C or D) that precedes your "
    "choice.\nOutput the thinking process in <think> </think> and final answer (chosen letter) in "
    "<answer> </answer> tags."
)
STRUCTURE_NUMBER = (
    "{question} Output the thinking process in <think> </think> and final answer (float number or int "
    "number) in <answer> </answer> tags."
)
# NOT VERBATIM. Reason-RFT's TRANCE_QUESTION_PROMPT is a long rule prompt that docs/sources.md R5 only
# describes; this one is written from that description and the function/value lists of docs/sources.md R4 (two
# images, the initial objects as tuples, 1-4 func(object_id, value) steps, <think>/<answer>). Give the
# rows a `problem` of their own to train on the released text.
SPATIAL = (
    "You will see two images: the initial state and the final state of a scene. The attributes of the "
    "initial objects are given as a list of tuples ('object_id', 'shape', 'size', 'color', 'material').\n"
    "Find a transformation that changes the initial state into the final state: a sequence of 1 to 4 "
    "functions, each written as func(object_id, value).\n"
    "Available functions and values:\n"
    "1. change_size(object_id, value): small, medium, large\n"
    "2. change_color(object_id, value): yellow, gray, cyan, blue, brown, green, red, purple\n"
    "3. change_material(object_id, value): glass, metal, rubber\n"
    "4. change_shape(object_id, value): cube, sphere, cylinder\n"
    "5. change_position(object_id, value): front, behind, left, right, front_left, front_right, "
    "behind_left, behind_right\n"
    "Put the reasoning process in <think> </think> and only the sequence of functions in "
    "<answer> </answer>.\n\n"
    "{question} Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
)
R1_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think><answer> answer here "
    "</answer>"
)

TEMPLATES: dict[str, str] = {
    "visual_rft/detection": DETECTION,
    "visual_rft/classification": CLASSIFICATION,
    "visual_rft/lisa": LISA,
    "reason_rft/counting": COUNTING,
    "reason_rft/counting_zero_shot": COUNTING_ZERO_SHOT,
    "reason_rft/structure_choice": STRUCTURE_CHOICE,
    "reason_rft/structure_number": STRUCTURE_NUMBER,
    "reason_rft/spatial": SPATIAL,
    "r1/system": R1_SYSTEM,
}

_CHOICES = ("A", "B", "C", "D")
# Classification: the noun after "the {what} of the"; plants and pets are "species", the rest "model".
_DEFAULT_WHAT = {"plant": "species", "pet": "species", "flower": "species", "bird": "species"}
# Fields read from another column when the row lacks them.
_ALIASES = {"question": ("question", "problem")}


def _structure(row: dict) -> str:
    """Reason-RFT's choice: the multiple-choice wording when the row's answer is a letter A-D."""
    raw = row.get("answer")
    if raw is None:
        raw = row.get("solution")
    if raw is None:
        raise ValueError("template 'reason_rft/structure' needs field 'answer' (or 'solution')")
    text = str(raw)
    inner = extract_answer(text, dotall=True)
    answer = (text if inner is None else inner).strip()
    return "reason_rft/structure_choice" if answer in _CHOICES else "reason_rft/structure_number"


# Templates whose text is vrft's own wording, not the paper's (see each one's comment).
NOT_VERBATIM = frozenset({"reason_rft/spatial"})

# Names whose template is chosen per row.
PER_ROW: dict[str, Callable[[dict], str]] = {"reason_rft/structure": _structure}


def template_names() -> list[str]:
    """Every name `render_prompt` accepts."""
    return sorted([*TEMPLATES, *PER_ROW])


def fields(name: str) -> list[str]:
    """The row fields a template reads (per-row templates: the union of their variants)."""
    if name in PER_ROW:
        return ["question"]
    if name not in TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r} (known: {', '.join(template_names())})")
    found = [f for _, f, _, _ in string.Formatter().parse(TEMPLATES[name]) if f]
    return list(dict.fromkeys(found))


def _value(name: str, row: dict, field: str) -> str:
    for column in _ALIASES.get(field, (field,)):
        value = row.get(column)
        if value is not None and not isinstance(value, list | dict) and str(value).strip():
            return str(value)
    options = " or ".join(repr(c) for c in _ALIASES.get(field, (field,)))
    raise ValueError(f"template {name!r} needs field {options} in the row")


def render_prompt(name: str, row: dict) -> str:
    """The prompt of template `name` filled from `row`. A missing field is a one-line ValueError
    naming it. Classification also fills {article} ("an" before a vowel) and defaults {what} to
    "species" for plants and pets, "model" otherwise."""
    chosen = PER_ROW[name](row) if name in PER_ROW else name
    needed = fields(chosen)
    values: dict[str, str] = {}
    for field in needed:
        if chosen == "visual_rft/classification" and field == "article":
            continue
        if chosen == "visual_rft/classification" and field == "what" and not row.get("what"):
            kind = _value(name, row, "kind").strip().lower()
            values["what"] = _DEFAULT_WHAT.get(kind, "model")
            continue
        values[field] = _value(name, row, field)
    if chosen == "visual_rft/classification":
        values["article"] = "an" if re.match(r"[aeiou]", values["kind"].strip(), re.IGNORECASE) else "a"
    return TEMPLATES[chosen].format(**values)


def render_text(text: str, row: dict, where: str = "template file") -> str:
    """A user's template text (e.g. a paper's exact evaluation prompt, read from a file) filled from
    `row`: each `{field}` is the row's column of that name; `{{` and `}}` are literal braces. A missing
    field is a one-line ValueError naming it."""
    try:
        needed = [f for _, f, _, _ in string.Formatter().parse(text) if f]
    except ValueError as err:
        raise ValueError(f"{where}: not a template ({err}); write a literal brace as {{{{ or }}}}") from None
    values = {f: _value(where, row, f) for f in dict.fromkeys(needed)}
    try:
        return text.format(**values)
    except (IndexError, KeyError, ValueError) as err:  # `{}` / `{0}` / `{a.b}`: fields must be column names
        raise ValueError(f"{where}: every {{field}} must name a column ({type(err).__name__}: {err})") from None


def _strip_wrapping(cot: str) -> str:
    """The reasoning alone. Reason-RFT's released `cot` is GPT-4o's reply cut at its last `<think>`
    (`"<think>" + reply.split("<think>")[-1]`, utils/distill_cot_data.py), so it usually reads
    `<think>reasoning</think>\\n<answer>answer</answer>`; a cot without tags is taken as is."""
    text = cot
    if "<think>" in text:
        text = text.rsplit("<think>", 1)[1]
    if "</think>" in text:
        text = text.split("</think>", 1)[0]
    elif "<answer>" in text:
        text = text.split("<answer>", 1)[0]
    return text.strip()


def sft_target(cot: str, answer: str) -> str:
    """The CoT-SFT target of Reason-RFT (docs/sources.md R3):
    `<think>\\n{cot}\\n</think>\\n<answer>\\n{answer}\\n</answer>`, with any `<think>`/`<answer>` wrapping
    that the released cot and answer already carry removed first."""
    if not isinstance(cot, str) or not isinstance(answer, str | int | float) or isinstance(answer, bool):
        raise ValueError("sft_target needs a cot string and an answer string")
    reasoning = _strip_wrapping(cot)
    text = str(answer)
    inner = extract_answer(text, dotall=True)
    final = (text if inner is None else inner).strip()
    if not reasoning:
        raise ValueError("field 'cot' holds no reasoning outside the <think>/<answer> tags")
    if not final:
        raise ValueError("field 'answer' is empty")
    return f"<think>\n{reasoning}\n</think>\n<answer>\n{final}\n</answer>"
