"""Synthetic tasks: format, determinism, labels that match the drawn pixels, corrupt rows."""

from __future__ import annotations

import io
import json
import re

import datasets
import pytest
from PIL import Image

from vrft.orchestrator.data.sources import decode_image, load_task_dataset
from vrft.testing.synthetic import BACKGROUND, COLORS, TASKS, make_synthetic_data

FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)  # Visual-RFT format reward
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, datasets.Dataset]:
    root = tmp_path_factory.mktemp("synthetic")
    return {task: load_task_dataset(make_synthetic_data(root / task, task, n=40, seed=7)) for task in TASKS}


def components(image: Image.Image) -> list[tuple[int, int, int, int, set[tuple[int, int, int]]]]:
    """Connected blobs of non-background pixels (8-neighbour): pixel bbox (x1, y1, x2+1, y2+1), colours."""
    w, h = image.size
    px = image.load()
    seen: set[tuple[int, int]] = set()
    blobs = []
    for y in range(h):
        for x in range(w):
            if (x, y) in seen or px[x, y] == BACKGROUND:
                continue
            stack, xs, ys, colors = [(x, y)], [], [], set()
            seen.add((x, y))
            while stack:
                cx, cy = stack.pop()
                xs.append(cx)
                ys.append(cy)
                colors.add(px[cx, cy])
                for dx in (-1, 0, 1):
                    for dy in (-1, 0, 1):
                        nx, ny = cx + dx, cy + dy
                        if 0 <= nx < w and 0 <= ny < h and (nx, ny) not in seen and px[nx, ny] != BACKGROUND:
                            seen.add((nx, ny))
                            stack.append((nx, ny))
            blobs.append((min(xs), min(ys), max(xs) + 1, max(ys) + 1, colors))
    return blobs


def test_columns_and_format(made):
    for task, ds in made.items():
        assert set(ds.column_names) == {"image", "problem", "solution", "ground_truth", "task", "cot"}
        for row in ds:
            assert row["task"] == task
            assert FORMAT.fullmatch(row["cot"]), row["cot"]
            # The target completion answers exactly what the solution stores.
            assert ANSWER.search(row["cot"]).group(1) == ANSWER.fullmatch(row["solution"]).group(1)
            assert "<think> </think>" in row["problem"] and "<answer> </answer>" in row["problem"]
            image = decode_image(row["image"])
            assert image is not None and image.mode == "RGB" and image.size == (56, 56)


def test_prompts_follow_the_papers(made):
    counting = made["counting"][0]["problem"]
    assert counting.endswith(
        "Output the thinking process in <think> </think> and final answer (number) in <answer> </answer> tags."
    )
    assert counting.startswith("How many ")
    detection = made["detection"][0]["problem"]
    assert detection.startswith("Detect all objects belonging to the category '")
    assert "<answer>[{'Position': [x1, y1, x2, y2], 'Confidence': number}, ...]</answer>" in detection
    color = made["color"][0]["problem"]
    assert color.startswith("This is an image containing a shape. Please identify the color of the shape")


def test_deterministic_given_seed(tmp_path):
    for task in TASKS:
        a = load_task_dataset(make_synthetic_data(tmp_path / f"{task}-a", task, n=12, seed=3))
        b = load_task_dataset(make_synthetic_data(tmp_path / f"{task}-b", task, n=12, seed=3))
        c = load_task_dataset(make_synthetic_data(tmp_path / f"{task}-c", task, n=12, seed=4))
        assert a.to_dict() == b.to_dict()
        assert a.to_dict() != c.to_dict()


def test_counting_labels_match_pixels(made):
    counts = set()
    for row in made["counting"]:
        answer = json.loads(row["ground_truth"])["answer"]
        counts.add(answer)
        assert len(components(decode_image(row["image"]))) == int(answer)
        shape = re.match(r"How many (\w+)s are", row["problem"]).group(1)
        assert shape in row["cot"]
    assert counts == {"1", "2", "3", "4"}


def test_color_labels_match_pixels(made):
    names = set()
    for row in made["color"]:
        name = json.loads(row["ground_truth"])["answer"]
        names.add(name)
        (blob,) = components(decode_image(row["image"]))
        assert blob[4] == {COLORS[name]}
    assert names == set(COLORS)


def test_detection_boxes_in_range_and_match_shapes(made):
    for row in made["detection"]:
        boxes = json.loads(row["ground_truth"])["boxes"]
        assert 1 <= len(boxes) <= 2
        for x1, y1, x2, y2 in boxes:
            assert all(isinstance(v, int) and 0 <= v <= 1000 for v in (x1, y1, x2, y2))
            assert x1 < x2 and y1 < y2
        image = decode_image(row["image"])
        drawn = sorted([round(v * 1000 / 56) for v in blob[:4]] for blob in components(image))
        category = re.search(r"category '(\w+)'", row["problem"]).group(1)
        # Squares fill their box exactly; a rasterized circle may miss its box's edge by a pixel.
        tolerance = 0 if category == "square" else round(1000 / 56) + 1
        assert len(drawn) == len(boxes)
        for got, want in zip(drawn, sorted(boxes), strict=True):
            assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= tolerance, (got, want)
        # The solution is Visual-RFT's string form of the same boxes.
        assert row["solution"].startswith("<answer>[{'Position': [")
        positions = re.findall(r"'Position': \[(\d+), (\d+), (\d+), (\d+)\]", row["solution"])
        assert [[int(v) for v in p] for p in positions] == boxes


def test_larger_image_size(tmp_path):
    ds = load_task_dataset(make_synthetic_data(tmp_path / "d", "detection", n=5, seed=0, image_size=112))
    for row in ds:
        image = decode_image(row["image"])
        assert image.size == (112, 112)
        assert len(components(image)) == len(json.loads(row["ground_truth"])["boxes"])


def test_corrupt_rows_are_stored_and_decode_to_none(tmp_path):
    path = make_synthetic_data(tmp_path / "c", "counting", n=20, seed=1, n_corrupt=3)
    raw = datasets.load_from_disk(str(path))  # must not fail, nor must plain row access
    assert len(raw) == 20 and all(isinstance(raw[i]["image"], dict) for i in range(20))
    ds = load_task_dataset(path)
    decoded = [decode_image(row["image"]) for row in ds]
    assert sum(d is None for d in decoded) == 3
    # The other columns of a corrupt row are intact: only the image is bad.
    assert all(FORMAT.fullmatch(row["cot"]) for row in ds)


def test_decode_image_never_raises(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 128))
    assert decode_image(rgba).mode == "RGB"
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="PNG")
    assert decode_image(buf.getvalue()).mode == "RGB"
    assert decode_image({"bytes": buf.getvalue(), "path": None}).size == (4, 4)
    file = tmp_path / "x.png"
    file.write_bytes(buf.getvalue())
    assert decode_image(str(file)).size == (4, 4)
    assert decode_image({"bytes": None, "path": str(file)}).size == (4, 4)
    for bad in (b"", b"\x89PNG\r\n\x1a\nnot really", {"bytes": b"junk", "path": None}, None, 3,
                str(tmp_path / "missing.png"), {"bytes": None, "path": None}):
        assert decode_image(bad) is None


def test_load_task_dataset_errors_and_splits(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_task_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        load_task_dataset(tmp_path / "empty")
    path = make_synthetic_data(tmp_path / "one", "color", n=4, seed=0)
    datasets.DatasetDict({"train": datasets.load_from_disk(str(path))}).save_to_disk(str(tmp_path / "dd"))
    ds = load_task_dataset(tmp_path / "dd")
    assert len(ds) == 4 and decode_image(ds[0]["image"]) is not None


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic task"):
        make_synthetic_data(tmp_path / "x", "segmentation", n=2, seed=0)
    with pytest.raises(ValueError):
        make_synthetic_data(tmp_path / "x", "counting", n=2, seed=0, n_corrupt=3)
