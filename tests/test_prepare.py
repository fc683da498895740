"""prepare-data modes: seeded k-shot subsets, COCO → Visual-RFT detection rows, LISA polygons → grounding
rows; every written row keeps the released schema and scores its task's maximum as a perfect answer."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from PIL import Image

from vrft.orchestrator.core.tasks import default_rewards, parse_ground_truth, perfect_answer
from vrft.orchestrator.core.templates import render_prompt
from vrft.orchestrator.data.prepare import coco_to_detection, describe, k_shot, lisa_to_grounding
from vrft.orchestrator.data.sources import load_rows
from vrft.testing.released import make_virft_classification, make_virft_detection
from vrft.verifiers import CompositeReward, reward_info


def assert_released_and_perfect(path: Path, task: str, extra: tuple[str, ...] = ()) -> datasets.Dataset:
    saved = datasets.load_from_disk(str(path))
    assert list(saved) == ["train"]
    train = saved["train"]
    assert train.column_names == ["image", "problem", "solution", *extra]
    assert isinstance(train.features["image"], datasets.Image) and train.features["image"].decode
    specs = default_rewards(task)
    best = sum(s.weight * reward_info(s.name).high for s in specs)
    scorer = CompositeReward(specs)
    for row in load_rows(path):
        gt = parse_ground_truth(row, task)
        assert scorer(perfect_answer(task, gt), gt)["total"] == pytest.approx(best)
    return train


# ---- k-shot ---------------------------------------------------------------------------------------


def test_k_shot_classification_is_seeded_and_per_class(tmp_path):
    source = make_virft_classification(tmp_path / "cls", n=12)  # 4 classes x 3 rows
    path, summary = k_shot(source, tmp_path / "k2", k=2, seed=1)
    train = assert_released_and_perfect(path, "classification")
    labels = [s.removeprefix("<answer>").removesuffix("</answer>") for s in train["solution"]]
    assert sorted(labels.count(c) for c in set(labels)) == [2, 2, 2, 2]
    assert summary == {"mode": "k_shot", "source": str(source), "rows": 8, "k": 2, "seed": 1, "classes": 4,
                       "short_classes": {}, "negatives_skipped": 0}
    again, _ = k_shot(source, tmp_path / "k2b", k=2, seed=1)
    assert datasets.load_from_disk(str(again))["train"]["solution"] == train["solution"]

    def drawn(seed: int) -> tuple[bytes, ...]:
        path, _ = k_shot(source, tmp_path / f"seed{seed}", k=1, seed=seed)
        return tuple(image.tobytes() for image in datasets.load_from_disk(str(path))["train"]["image"])

    assert len({drawn(seed) for seed in range(6)}) > 1  # other seeds draw other rows
    _, short = k_shot(source, tmp_path / "k4", k=4)
    assert short["rows"] == 12 and short["short_classes"] == {c: 3 for c in set(labels)}


def test_k_shot_detection_reads_the_category_from_the_prompt(tmp_path):
    source = make_virft_detection(tmp_path / "det", n=12, negative_every=4)
    path, summary = k_shot(source, tmp_path / "k1", k=1, task="detection")
    train = assert_released_and_perfect(path, "detection")
    assert summary["negatives_skipped"] == 3 and "<answer>No Objects</answer>" not in train["solution"]
    categories = [p.split("category '")[1].split("'")[0] for p in train["problem"]]
    assert len(categories) == len(set(categories)) == summary["classes"]
    _, with_neg = k_shot(source, tmp_path / "k1n", k=1, task="detection", negatives=True)
    assert with_neg["classes"] == summary["classes"] + 1


def test_k_shot_with_a_class_column_and_errors(tmp_path):
    rows = {"image": [None] * 5, "problem": ["p"] * 5, "solution": ["<answer>x</answer>"] * 5,
            "label": ["a", "a", "b", "b", "b"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "src"))
    _, summary = k_shot(tmp_path / "src", tmp_path / "out", k=2, class_column="label")
    assert summary["rows"] == 4 and summary["classes"] == 2
    with pytest.raises(ValueError, match="positive integer"):
        k_shot(tmp_path / "src", tmp_path / "o2", k=0)
    with pytest.raises(ValueError, match="not 'counting'"):
        k_shot(tmp_path / "src", tmp_path / "o3", k=1, task="counting")
    bad = datasets.Dataset.from_dict({"problem": ["p"], "solution": ["<answer></answer>"]})
    bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="row 0: field 'solution'"):
        k_shot(tmp_path / "bad", tmp_path / "o4", k=1)
    # the task is checked before any data is read (the source does not exist)
    with pytest.raises(ValueError, match="k_shot takes a classification or detection dataset, not 'bogus'"):
        k_shot(tmp_path / "nowhere", tmp_path / "o5", k=1, task="bogus")
    nameless = datasets.Dataset.from_dict({"problem": ["find it"], "solution": [
        "<answer>[{'Position': [1, 2, 30, 40], 'Confidence': 1}]</answer>"]})
    nameless.save_to_disk(str(tmp_path / "nameless"))
    with pytest.raises(ValueError, match="row 0: field 'problem' names no category"):
        k_shot(tmp_path / "nameless", tmp_path / "o6", k=1, task="detection")


# ---- COCO -----------------------------------------------------------------------------------------


def write_coco(root: Path) -> tuple[Path, Path]:
    images = root / "val2017"
    images.mkdir(parents=True)
    for name, size in [("a.jpg", (100, 50)), ("b.jpg", (200, 200)), ("c.jpg", (64, 64))]:
        Image.new("RGB", size, (90, 120, 150)).save(images / name)
    coco = {
        "info": {"description": "test"},
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
            {"id": 2, "file_name": "b.jpg", "width": 200, "height": 200},
            {"id": 3, "file_name": "missing.jpg", "width": 10, "height": 10},
        ],
        "categories": [{"id": 1, "name": "cat", "supercategory": "animal"},
                       {"id": 2, "name": "dog", "supercategory": "animal"},
                       {"id": 5, "name": "fire hydrant", "supercategory": "outdoor"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 15], "area": 300, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 10, 40, 30], "area": 1200, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 15], "area": 300, "iscrowd": 0},
            {"id": 4, "image_id": 1, "category_id": 2, "bbox": [0, 0, 100, 50], "area": 5000, "iscrowd": 1},
            {"id": 5, "image_id": 2, "category_id": 5, "bbox": [20, 40, 100, 60], "area": 6000, "iscrowd": 0},
            {"id": 6, "image_id": 2, "category_id": 2, "bbox": [199.9, 10, 0.05, 5], "area": 0, "iscrowd": 0},
        ],
    }
    path = root / "instances_val2017.json"
    path.write_text(json.dumps(coco))
    return path, images


def test_coco_to_detection(tmp_path):
    annotations, images = write_coco(tmp_path)
    path, summary = coco_to_detection(annotations, images, tmp_path / "out")
    train = assert_released_and_perfect(path, "detection")
    prompts = [render_prompt("visual_rft/detection", {"category": c}) for c in ("cat", "fire hydrant")]
    assert train["problem"] == prompts
    assert train["solution"] == [
        "<answer>[{'Position': [100, 100, 300, 400], 'Confidence': 1}, "
        "{'Position': [500, 200, 900, 800], 'Confidence': 1}]</answer>",
        "<answer>[{'Position': [100, 200, 600, 500], 'Confidence': 1}]</answer>",
    ]
    assert train[0]["image"].size == (100, 50)
    assert summary == {"mode": "coco", "source": str(annotations), "rows": 2, "categories": 3, "images": 2,
                       "positives": 2, "negatives": 0, "crowd_skipped": 1, "degenerate_boxes": 1,
                       "duplicate_boxes": 1, "missing_images": 1, "first_missing": ["missing.jpg"]}
    line = describe(path, summary)
    assert "\n" not in line and line.startswith("prepare-data coco: 2 rows from ")
    assert "missing images 1" in line and "first missing [missing.jpg]" in line


def test_coco_negatives_and_category_filter(tmp_path):
    annotations, images = write_coco(tmp_path)
    path, summary = coco_to_detection(annotations, images, tmp_path / "neg", negatives_per_image=5, seed=3)
    train = assert_released_and_perfect(path, "detection")
    assert summary["negatives"] == 4 and train["solution"].count("<answer>No Objects</answer>") == 4
    _, only = coco_to_detection(annotations, images, tmp_path / "dog", categories=["fire hydrant"])
    assert only["rows"] == 1 and only["categories"] == 1
    with pytest.raises(ValueError, match=r"\['horse'\] are not in"):
        coco_to_detection(annotations, images, tmp_path / "x", categories=["horse"])
    with pytest.raises(ValueError, match="produced no rows"):
        coco_to_detection(annotations, tmp_path / "nowhere", tmp_path / "y")


# ---- LISA -----------------------------------------------------------------------------------------


def test_lisa_polygons_to_grounding(tmp_path):
    src = tmp_path / "ReasonSeg" / "train"
    src.mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(src / "img1.jpg")
    Image.new("RGB", (50, 80)).save(src / "img2.png")
    (src / "img1.json").write_text(json.dumps({
        "text": ["the object used for cutting", "what a chef holds"], "is_sentence": True,
        "imageWidth": 200, "imageHeight": 100,
        "shapes": [{"label": "ignore", "points": [[0, 0], [5, 5], [0, 5]], "shape_type": "polygon"},
                   {"label": "target", "points": [[20.5, 10], [120, 30.9], [60, 90]]},
                   {"label": "target", "points": [[0, 0], [199, 99]], "shape_type": "polygon"}],
    }))
    (src / "img2.json").write_text(json.dumps({
        "text": "the tall thing", "shapes": [{"label": "target", "points": [[5, 8], [45, 8], [45, 72]]}],
    }))
    (src / "img3.json").write_text(json.dumps({"text": ["x"], "shapes": []}))
    path, summary = lisa_to_grounding(src, tmp_path / "lisa")
    train = assert_released_and_perfect(path, "grounding", (
        "lisa_id", "instruction_index", "instruction", "box_px", "width", "height", "mask", "shape_label", "only_ignore_shapes"))
    # One row per image, its first instruction (gen_box_ann.py). `solution`, vrft's reading: the first
    # polygon not labelled ignore, x 20.5..120 of 200, y 10..90 of 100; img2's size is read from the
    # image file (its json has no imageWidth). `box_px`: shapes[0] (the ignore one) in float pixels.
    first, second = "<answer>(102,100),(600,900)</answer>", "<answer>(100,100),(900,900)</answer>"
    assert train["solution"] == [first, second]
    assert train["problem"][0] == render_prompt("visual_rft/lisa", {"instruction": "the object used for cutting"})
    assert train["box_px"] == [[0.0, 0.0, 5.0, 5.0], [5.0, 8.0, 45.0, 72.0]]
    assert train["shape_label"] == ["ignore", "target"] and train["lisa_id"] == ["img1", "img2"]
    assert summary == {"mode": "lisa", "source": str(src), "rows": 2, "files": 3, "images": 2,
                       "ignore_first": 1, "only_ignore": 0, "unscorable": 1}
    assert json.loads((path / "lisa_unscorable.json").read_text()) == [{"json": "img3.json", "reason": "no polygon"}]
    path, summary = lisa_to_grounding(src, tmp_path / "lisa_all", all_instructions=True)
    assert datasets.load_from_disk(str(path))["train"]["instruction_index"] == [0, 1, 0]
    with pytest.raises(ValueError, match="no LISA .json annotation files"):
        lisa_to_grounding(tmp_path, tmp_path / "none")
