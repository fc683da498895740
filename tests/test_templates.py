"""Prompt templates: verbatim strings, per-row structure variant, one-line errors, the SFT target."""

from __future__ import annotations

import pytest

from vrft.orchestrator.core.templates import TEMPLATES, fields, render_prompt, sft_target, template_names
from vrft.testing.synthetic import COUNTING_PROMPT, DETECTION_PROMPT

AIRCRAFT = (
    "This is an image containing an aircraft. Please identify the model of the aircraft based on the image.\n"
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "The output answer format should be as follows:\n"
    "<think> ... </think> <answer>species name</answer>\n"
    "Please strictly follow the format."
)


def test_detection_is_the_papers_prompt():
    text = render_prompt("visual_rft/detection", {"category": "fire hydrant"})
    assert text == DETECTION_PROMPT.format(category="fire hydrant")
    assert "'fire hydrant' in the image, and provide" in text
    assert "[{'Position': [x1, y1, x2, y2], 'Confidence': number}, ...]" in text


def test_classification_aircraft_wording_is_verbatim():
    assert render_prompt("visual_rft/classification", {"kind": "aircraft", "what": "model"}) == AIRCRAFT
    assert render_prompt("visual_rft/classification", {"kind": "aircraft"}) == AIRCRAFT
    plant = render_prompt("visual_rft/classification", {"kind": "plant"})
    assert plant.startswith("This is an image containing a plant. Please identify the species of the plant")
    assert "containing a pet. Please identify the species of the pet" in render_prompt(
        "visual_rft/classification", {"kind": "pet"}
    )


def test_lisa_prompt():
    text = render_prompt("visual_rft/lisa", {"instruction": "the thing used to cut bread"})
    assert text == (
        "Output the bounding box in the image corresponding to the instruction: the thing used to cut bread"
        " Output the thinking process in <think> </think> and your grouding box. Following "
        '"<think> thinking process </think>\n<answer>(x1,y1),(x2,y2)</answer>)" format.'
    )


def test_counting_reads_question_or_problem():
    row = {"problem": "How many cubes are left?"}
    assert render_prompt("reason_rft/counting", row) == COUNTING_PROMPT.format(question=row["problem"])
    assert render_prompt("reason_rft/counting", {"question": "Q?", "problem": "P?"}).startswith("Q? Output")
    zero = render_prompt("reason_rft/counting_zero_shot", row)
    assert zero.startswith("Please answer in Arabic numerals. For example, if the answer is 3, please")
    assert zero.endswith("with 3. " + row["problem"])


@pytest.mark.parametrize(
    ("answer", "marker"),
    [
        ("A", "final answer (chosen letter)"),
        ("<answer>D</answer>", "final answer (chosen letter)"),
        ("12.5", "final answer (float number or int number)"),
        ("E", "final answer (float number or int number)"),
        (3, "final answer (float number or int number)"),
    ],
)
def test_structure_variant_is_chosen_per_row(answer, marker):
    text = render_prompt("reason_rft/structure", {"problem": "Find x.", "answer": answer})
    assert text.startswith("Find x. ")
    assert marker in text


def test_structure_choice_text():
    text = render_prompt("reason_rft/structure", {"problem": "Q", "answer": "B"})
    assert text == (
        "Q Please select the correct answer by writing the letter (A, B, C or D) that precedes your choice.\n"
        "Output the thinking process in <think> </think> and final answer (chosen letter) in "
        "<answer> </answer> tags."
    )


def test_spatial_and_system_prompt():
    text = render_prompt("reason_rft/spatial", {"problem": "[('0', 'cube', 'large', 'red', 'metal')]"})
    assert "[('0', 'cube', 'large', 'red', 'metal')]" in text
    assert "change_position(object_id, value)" in text and "<answer> </answer>" in text
    system = render_prompt("r1/system", {})
    assert system.startswith("A conversation between User and Assistant.")
    assert system.endswith("<think> reasoning process here </think><answer> answer here </answer>")


@pytest.mark.parametrize(
    ("name", "row", "field"),
    [
        ("visual_rft/detection", {"problem": "x"}, "'category'"),
        ("visual_rft/lisa", {}, "'instruction'"),
        ("reason_rft/counting", {"answer": "3"}, "'question' or 'problem'"),
        ("reason_rft/structure", {"problem": "Q"}, "'answer'"),
        ("visual_rft/classification", {"what": "model"}, "'kind'"),
    ],
)
def test_missing_field_is_one_line(name, row, field):
    with pytest.raises(ValueError) as info:
        render_prompt(name, row)
    assert field in str(info.value) and name in str(info.value) and "\n" not in str(info.value)


def test_unknown_template():
    with pytest.raises(ValueError, match="unknown prompt template 'nope'"):
        render_prompt("nope", {})


def test_every_template_renders_from_its_fields():
    for name in template_names():
        row = {f: "x" for f in ["question", "answer", "category", "kind", "what", "instruction"]}
        assert render_prompt(name, row)
        if name in TEMPLATES:
            assert set(fields(name)) <= set(row) | {"article"}


def test_sft_target_from_released_cot():
    released = "<think>There are 3 cubes; one is removed.\nSo 2 are left.</think>\n<answer>2</answer>"
    assert sft_target(released, "2") == (
        "<think>\nThere are 3 cubes; one is removed.\nSo 2 are left.\n</think>\n<answer>\n2\n</answer>"
    )
    assert sft_target("plain reasoning", "<answer>B</answer>") == (
        "<think>\nplain reasoning\n</think>\n<answer>\nB\n</answer>"
    )
    cut = sft_target("Answer: 2 <think>step</think><answer>2</answer>", "2")
    assert cut.startswith("<think>\nstep\n</think>")
    assert sft_target("reasoning <answer>2</answer>", 2).startswith("<think>\nreasoning\n</think>")


def test_sft_target_errors():
    with pytest.raises(ValueError, match="cot"):
        sft_target("<think> </think><answer>2</answer>", "2")
    with pytest.raises(ValueError, match="answer"):
        sft_target("why", "  ")
