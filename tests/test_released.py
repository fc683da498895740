"""The released-schema fixtures load through load_rows, keep the papers' exact forms, and every row's
ground truth parses and scores its task's maximum as a perfect answer."""

from __future__ import annotations

import json
import re

import datasets
import pytest

from vrft.orchestrator.core.tasks import default_rewards, parse_ground_truth, perfect_answer
from vrft.orchestrator.core.templates import render_prompt, sft_target
from vrft.orchestrator.data.sources import decode_image, load_rows
from vrft.testing.released import RELEASED_TASKS, make_all
from vrft.verifiers import CompositeReward, reward_info

ITEM = r"\{'Position': \[\d+, \d+, \d+, \d+\], 'Confidence': 1\}"
DET_SOLUTION = re.compile(rf"<answer>\[{ITEM}(, {ITEM})*\]</answer>")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return make_all(tmp_path_factory.mktemp("released"), n=8)


@pytest.mark.parametrize("name", list(RELEASED_TASKS))
def test_every_row_scores_the_maximum(fixtures, name):
    task = RELEASED_TASKS[name]
    rows = load_rows(fixtures[name])
    specs = default_rewards(task)
    scorer = CompositeReward(specs)
    best = sum(s.weight * reward_info(s.name).high for s in specs)
    for row in rows:
        gt = parse_ground_truth(row, task)
        scores, errors = scorer.score(perfect_answer(task, gt), gt)
        assert not errors and scores["total"] == pytest.approx(best), (row.get("id"), scores)
        images = row["image"] if isinstance(row["image"], list) else [row["image"]]
        assert all(decode_image(v) is not None for v in images)


@pytest.mark.parametrize("name", ["virft_detection", "virft_classification", "lisa_grounding"])
def test_visual_rft_schema(fixtures, name):
    saved = datasets.load_from_disk(str(fixtures[name]))
    assert isinstance(saved, datasets.DatasetDict) and list(saved) == ["train"]
    train = saved["train"]
    assert train.column_names == ["image", "problem", "solution"]
    assert isinstance(train.features["image"], datasets.Image)
    assert train[0]["image"].mode == "RGBA"
    assert all(s.startswith("<answer>") and s.endswith("</answer>") for s in train["solution"])


def test_detection_forms(fixtures):
    rows = load_rows(fixtures["virft_detection"])
    solutions = rows["solution"]
    negatives = [s for s in solutions if s == "<answer>No Objects</answer>"]
    assert 0 < len(negatives) < len(solutions)
    assert all(DET_SOLUTION.fullmatch(s) for s in solutions if s not in negatives)
    for row in rows:
        category = re.search(r"category '([^']+)'", row["problem"]).group(1)
        assert row["problem"] == render_prompt("visual_rft/detection", {"category": category})


def test_lisa_form(fixtures):
    rows = load_rows(fixtures["lisa_grounding"])
    assert all(re.fullmatch(r"<answer>\(\d+,\d+\),\(\d+,\d+\)</answer>", s) for s in rows["solution"])
    assert rows[0]["problem"].startswith("Output the bounding box in the image corresponding to the")


def test_reason_rft_meta_files(fixtures):
    for name, stem in [("reason_rft_counting", "A3-Visual-Counting-train-8-cot.json"),
                       ("reason_rft_structure", "A2-Structure-Perception-train-8-cot.json"),
                       ("reason_rft_spatial", "A1-Spatial-Transformation-train-8-cot.json")]:
        path = fixtures[name]
        assert path.name == stem
        raw = json.loads(path.read_text())
        assert all(list(r) == ["id", "image", "problem", "answer", "cot"] for r in raw)
        for r in raw:  # image paths relative to the meta file's folder
            for rel in r["image"] if isinstance(r["image"], list) else [r["image"]]:
                assert not rel.startswith("/") and (path.parent / rel).is_file()
        for row in load_rows(path):
            target = sft_target(row["cot"], row["answer"])
            assert target.startswith("<think>\n")
            assert target.endswith(f"\n</think>\n<answer>\n{row['answer']}\n</answer>")


def test_structure_mixes_letters_and_numbers(fixtures):
    rows = load_rows(fixtures["reason_rft_structure"])
    letters = [r for r in rows if r["answer"] in ("A", "B", "C", "D")]
    assert 0 < len(letters) < len(rows)
    for row in rows:
        prompt = render_prompt("reason_rft/structure", row)
        assert ("(chosen letter)" in prompt) == (row in letters)


def test_trance_rows_have_two_images_and_func_steps(fixtures):
    raw = json.loads(fixtures["reason_rft_spatial"].read_text())
    assert all(isinstance(r["image"], list) and len(r["image"]) == 2 for r in raw)
    step = r"change_(size|color|material|shape|position)\(\d, '\w+'\)"
    assert all(re.fullmatch(rf"{step}(, {step})*", r["answer"]) for r in raw)
    assert all(r["problem"].startswith("[('0', ") for r in raw)
