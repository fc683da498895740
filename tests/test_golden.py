"""Golden rows (vrft/testing/golden/, typed out by hand in the released forms) against the project's
readers and its fixture generator (vrft/testing/released.py):

(a) the loaders, the ground-truth parsers, the templates and `prepare-data coco` read each golden row
    and give the fields worked out by hand here (not computed with the project's own functions);
(b) the generator's rows have the golden rows' keys, types, nesting and string forms, so a generator
    that drifts from the released form fails here even though its parser still agrees with it.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import datasets
import pytest
from PIL import Image

import vrft.testing
from vrft.orchestrator.core.tasks import parse_ground_truth
from vrft.orchestrator.core.templates import render_prompt, sft_target
from vrft.orchestrator.data.prepare import coco_to_detection
from vrft.orchestrator.data.sources import load_rows
from vrft.testing import released
from vrft.verifiers.rewards_spatial import extract_items

GOLDEN = Path(vrft.testing.__file__).parent / "golden"
IMAGE_SIZES = {"images/coco_000001.png": (640, 480)}  # the COCO file's size; any size for the rest
REASON_FILES = {"counting": "A3-Visual-Counting-train-golden-cot.json",
                "structure": "A2-Structure-Perception-train-golden-cot.json",
                "spatial": "A1-Spatial-Transformation-train-golden-cot.json"}
REASON_BUILDERS = {"counting": released.make_reason_rft_counting, "structure": released.make_reason_rft_structure,
                   "spatial": released.make_reason_rft_spatial}
VIRFT_FILES = {"detection": "virft_detection.json", "classification": "virft_classification.json",
               "grounding": "virft_lisa.json"}
VIRFT_BUILDERS = {"detection": released.make_virft_detection,
                  "classification": released.make_virft_classification,
                  "grounding": released.make_lisa_grounding}


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    """The golden folder with blank images drawn where its rows point."""
    out = tmp_path_factory.mktemp("golden") / "golden"
    shutil.copytree(GOLDEN, out)
    for path in out.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        for row in data if isinstance(data, list) else []:
            for rel in [row.get("image_path") or row.get("image")]:
                for one in rel if isinstance(rel, list) else [rel]:
                    (out / one).parent.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", IMAGE_SIZES.get(one, (64, 48)), (255, 255, 255)).save(out / one)
    (out / "coco_images").mkdir()
    shutil.copy(out / "images" / "coco_000001.png", out / "coco_images" / "coco_000001.png")
    return out


def raw(name: str) -> list[dict]:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


# ---- (a) the project reads the golden rows as worked out by hand --------------------------------

def test_detection_rows(golden):
    rows = load_rows(golden / VIRFT_FILES["detection"])
    assert Path(rows[0]["image_path"]) == golden / "images" / "coco_000001.png"  # resolved beside the file
    assert [parse_ground_truth(r, "detection") for r in rows] == [
        {"boxes": [[100, 100, 300, 300], [500, 500, 750, 750]]},
        {"boxes": []},  # No Objects
        {"boxes": [[12, 345, 678, 999]]},
    ]
    categories = [re.search(r"category '([^']+)'", r["problem"]).group(1) for r in rows]
    assert categories == ["bus", "stop sign", "stepladder"]
    # the typed prompt is the project's template, character for character
    assert [r["problem"] for r in rows] == [render_prompt("visual_rft/detection", {"category": c})
                                            for c in categories]


def test_prepare_coco_writes_the_golden_solution(golden, tmp_path):
    """COCO bbox [x, y, w, h] in a 640×480 image → int(coord / side * 1000):
    [64, 48, 128, 96] → x1 64/640 = 100, y1 48/480 = 100, x2 192/640 = 300, y2 144/480 = 300;
    [320, 240, 160, 120] → 500, 500, 480/640 = 750, 360/480 = 750."""
    path, summary = coco_to_detection(golden / "coco_instances.json", golden / "coco_images", tmp_path / "out",
                                      categories=["bus"])
    assert summary["rows"] == 1
    train = datasets.load_from_disk(str(path))["train"]
    bus = raw(VIRFT_FILES["detection"])[0]
    assert train[0]["solution"] == bus["solution"]  # the released string, byte for byte
    assert train[0]["problem"] == bus["problem"]


def test_classification_row(golden):
    row = load_rows(golden / VIRFT_FILES["classification"])[0]
    assert parse_ground_truth(row, "classification") == {"answer": "Boeing 737-200"}
    assert row["problem"] == render_prompt("visual_rft/classification", {"kind": "aircraft"})


def test_lisa_row(golden):
    row = load_rows(golden / VIRFT_FILES["grounding"])[0]
    assert parse_ground_truth(row, "grounding") == {"box": [125, 250, 500, 875]}
    assert row["problem"] == render_prompt("visual_rft/lisa", {"instruction": "the thing you would sit on to rest"})


def test_counting_meta_and_rl_forms(golden):
    meta = load_rows(golden / REASON_FILES["counting"])[0]
    rl = load_rows(golden / "reason_rft_counting_rl.json")[0]
    assert Path(meta["image"]) == golden / "images" / "clevr_math_golden_0.png"
    assert parse_ground_truth(meta, "counting") == parse_ground_truth(rl, "counting") == {"answer": "4"}
    question = "Subtract all red cubes. How many objects are left?"
    assert render_prompt("reason_rft/counting", meta) == (
        question + " Output the thinking process in <think> </think> and final answer (number) in "
        "<answer> </answer> tags.")
    assert sft_target(meta["cot"], meta["answer"]) == (
        "<think>\nThere are 5 objects and 1 of them is a red cube; 5 - 1 = 4.\n</think>\n<answer>\n4\n</answer>")


def test_structure_letter_and_number(golden):
    letter, number = load_rows(golden / REASON_FILES["structure"])
    assert parse_ground_truth(letter, "structure") == {"answer": "B"}
    assert parse_ground_truth(number, "structure") == {"answer": "5"}
    assert render_prompt("reason_rft/structure", letter).endswith(
        "D: 90° Please select the correct answer by writing the letter (A, B, C or D) that precedes your "
        "choice.\nOutput the thinking process in <think> </think> and final answer (chosen letter) in "
        "<answer> </answer> tags.")
    assert render_prompt("reason_rft/structure", number).endswith(
        "Find the hypotenuse. Output the thinking process in <think> </think> and final answer (float "
        "number or int number) in <answer> </answer> tags.")


def test_trance_two_images_and_steps(golden):
    row = load_rows(golden / REASON_FILES["spatial"])[0]
    assert [Path(p) for p in row["image"]] == [golden / "images" / "trance_golden_0_initial.png",
                                               golden / "images" / "trance_golden_0_final.png"]
    gt = parse_ground_truth(row, "spatial")
    assert gt == {"answer": "change_color(1, 'green'), change_size(0, 'large')"}
    assert extract_items(gt["answer"])[0] == [("change_color", "1", "green"), ("change_size", "0", "large")]


# ---- (b) the generator's rows have the golden forms ---------------------------------------------

def value_type(value) -> str:
    if isinstance(value, list):
        return "list[" + ",".join(sorted({value_type(v) for v in value})) + "]"
    return type(value).__name__


def detection_form(solution: str) -> tuple:
    """The printed form of a detection solution, numbers and counts aside: a negative, or the item
    keys in order, each value's type, the box length, and whether the string is Python's own
    printing of the list (single quotes, `, ` separators)."""
    inner = solution.removeprefix("<answer>").removesuffix("</answer>")
    if inner == "No Objects":
        return ("No Objects",)
    items = ast.literal_eval(inner)
    kinds = {(tuple(i), tuple(value_type(v) for v in i.values()), len(i["Position"])) for i in items}
    return ("boxes", solution == f"<answer>{items!r}</answer>", *sorted(kinds))


SOLUTION_FORMS = {  # task → the solution's form with its values abstracted away
    "detection": detection_form,
    "classification": lambda s: re.sub(r"(?<=<answer>)[^<>]+(?=</answer>)", "NAME", s),
    "grounding": lambda s: re.sub(r"\d+", "9", s),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("generated")
    paths = {task: build(out / task, n=8) for task, build in VIRFT_BUILDERS.items()}
    paths.update({task: build(out / task, n=6) for task, build in REASON_BUILDERS.items()})
    return paths


@pytest.mark.parametrize("task", list(VIRFT_FILES))
def test_generator_matches_golden_visual_rft(generated, task):
    golden_rows = raw(VIRFT_FILES[task])
    train = datasets.load_from_disk(str(generated[task]))["train"]
    # the notebook turns `image_path` into the `image` column; the other keys and their order stay
    assert train.column_names == ["image" if k == "image_path" else k for k in golden_rows[0]]
    form = SOLUTION_FORMS[task]
    want = {form(r["solution"]) for r in golden_rows}
    got = {form(s) for s in train["solution"]}
    assert got == want, (got, want)  # detection: a negative and the positives' one item form, on both


@pytest.mark.parametrize("task", list(REASON_FILES))
def test_generator_matches_golden_reason_rft(generated, task):
    golden_rows = raw(REASON_FILES[task])
    made = json.loads(generated[task].read_text(encoding="utf-8"))
    assert generated[task].name.startswith(REASON_FILES[task].split("-golden-")[0])  # A3-Visual-Counting-train…
    keys = {tuple(r) for r in golden_rows}
    assert {tuple(r) for r in made} == keys
    types = {tuple(value_type(v) for v in r.values()) for r in golden_rows}
    assert {tuple(value_type(v) for v in r.values()) for r in made} == types
    cot = re.compile(r"<think>[^<>]+</think>\n<answer>(?P<answer>[^<>]+)</answer>")
    for row in [*golden_rows, *made]:  # the cot's shape, its answer the row's answer
        match = cot.fullmatch(row["cot"])
        assert match and match["answer"] == row["answer"], row
    answer_forms = {
        "counting": lambda a: re.sub(r"\d+", "9", a),
        "structure": lambda a: "letter" if a in ("A", "B", "C", "D") else re.sub(r"\d+", "9", a),
        "spatial": lambda a: re.sub(r"change_\w+\(\d+, '\w+'\)", "STEP", a).replace("STEP, ", ""),
    }[task]
    assert {answer_forms(r["answer"]) for r in made} == {answer_forms(r["answer"]) for r in golden_rows}
    if task == "spatial":  # the problem: the initial objects as a list of 5-string tuples
        for row in [*golden_rows, *made]:
            objects = ast.literal_eval(row["problem"])
            assert isinstance(objects, list) and all(
                isinstance(o, tuple) and len(o) == 5 and all(isinstance(v, str) for v in o) for o in objects)
