"""load_rows over every source form: save_to_disk folders, JSON/JSONL meta files with relative image
paths, local data files and dataset repo folders, and Hub ids (load_dataset stubbed: nothing downloads)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pytest
from PIL import Image

from vrft.orchestrator.data import sources
from vrft.orchestrator.data.sources import decode_image, load_rows


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # load_dataset writes an Arrow cache; keep it inside the test's folder.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def png(color=(200, 10, 10), size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def image_dataset(n: int) -> datasets.Dataset:
    features = datasets.Features(
        {"image": datasets.Image(), "problem": datasets.Value("string"), "solution": datasets.Value("string")}
    )
    rows = {
        "image": [{"bytes": png(), "path": None} for _ in range(n)],
        "problem": [f"p{i}" for i in range(n)],
        "solution": [f"<answer>{i}</answer>" for i in range(n)],
    }
    return datasets.Dataset.from_dict(rows, features=features)


def test_save_to_disk_dataset_dict_and_splits(tmp_path):
    folder = tmp_path / "virft"
    datasets.DatasetDict({"train": image_dataset(3), "test": image_dataset(2)}).save_to_disk(str(folder))
    rows = load_rows(str(folder))
    assert len(rows) == 3 and rows.column_names == ["image", "problem", "solution"]
    value = rows[0]["image"]
    assert isinstance(value, dict) and value["bytes"]  # undecoded
    assert decode_image(value).size == (8, 8)
    assert len(load_rows(folder, split="test")) == 2
    assert len(load_rows(f"{folder}@test")) == 2
    with pytest.raises(ValueError, match="no split 'dev'"):
        load_rows(folder, split="dev")
    with pytest.raises(ValueError, match="names split 'test' but the split setting is 'train'"):
        load_rows(f"{folder}@test", split="train")


def write_images(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png())


def test_reason_rft_json_meta_file(tmp_path):
    write_images(tmp_path, ["images/a.png", "images/b0.png", "images/b1.png"])
    meta = [
        {"id": "t0", "image": ["images/b0.png", "images/b1.png"], "problem": "o", "answer": "x", "cot": "c"},
        {"id": "clevr_0", "image": "images/a.png", "problem": "How many?", "answer": 3, "cot": "c"},
    ]
    path = tmp_path / "A3-Visual-Counting-train-2-cot.json"
    path.write_text(json.dumps(meta))
    rows = load_rows(str(path))
    assert rows.column_names == ["id", "image", "problem", "answer", "cot"]
    # One row has a list, so single paths become one-item lists; numbers next to strings become strings.
    assert rows[0]["image"] == [str(tmp_path / "images/b0.png"), str(tmp_path / "images/b1.png")]
    assert rows[1]["image"] == [str(tmp_path / "images/a.png")]
    assert rows[1]["answer"] == "3"
    assert all(decode_image(p) is not None for p in rows[0]["image"])


def test_single_image_meta_keeps_strings_and_image_root(tmp_path):
    write_images(tmp_path / "train_images", ["a.png"])
    meta_dir = tmp_path / "jsons"
    meta_dir.mkdir()
    (meta_dir / "m.json").write_text(json.dumps([{"id": 1, "image": "a.png", "problem": "q", "answer": "2"}]))
    rows = load_rows(meta_dir / "m.json", image_root=tmp_path / "train_images")
    assert rows[0]["image"] == str((tmp_path / "train_images" / "a.png").resolve())
    # Without image_root the path resolves next to the file, where there is no image: a counted bad row.
    assert decode_image(load_rows(meta_dir / "m.json")[0]["image"]) is None


def test_jsonl_meta_file(tmp_path):
    write_images(tmp_path, ["x.png"])
    path = tmp_path / "rows.jsonl"
    path.write_text('{"image": "x.png", "answer": "A"}\n\n{"image": "/abs/y.png", "answer": "B"}\n')
    rows = load_rows(path)
    assert rows["image"] == [str(tmp_path / "x.png"), "/abs/y.png"]
    assert rows["answer"] == ["A", "B"]
    path.write_text('{"answer": "A"}\n{"answer": \n')
    with pytest.raises(ValueError, match=r"rows.jsonl:2: not a JSON line"):
        load_rows(path)


@pytest.mark.parametrize("text, message", [
    ("[]", "has no rows"),
    ('{"a": 1}', "expected a list of row objects"),
    ('[{"image": 5}]', "row 0 field 'image'"),
    ('[{"x": [1]}, {"x": "a"}]', "column 'x' mixes value types"),
])
def test_meta_file_errors_name_the_problem(tmp_path, text, message):
    path = tmp_path / "m.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_rows(path)


def test_meta_file_has_no_other_split(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("[{}]")
    with pytest.raises(ValueError, match="no split 'test'"):
        load_rows(path, split="test")


def test_local_dataset_repo_folder_with_splits_and_configs(tmp_path):
    repo = tmp_path / "repo"
    for config, n in (("small", 2), ("big", 4)):
        for split in ("train", "test"):
            (repo / config).mkdir(parents=True, exist_ok=True)
            lines = [json.dumps({"problem": f"{config}-{split}-{i}", "answer": str(i)}) for i in range(n)]
            (repo / config / f"{split}.jsonl").write_text("\n".join(lines))
    (repo / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: small\n  data_files:\n  - split: train\n    path: small/train.jsonl\n"
        "  - split: test\n    path: small/test.jsonl\n"
        "- config_name: big\n  data_files:\n  - split: train\n    path: big/train.jsonl\n"
        "  - split: test\n    path: big/test.jsonl\n---\n"
    )
    rows = load_rows(str(repo), config_name="big")
    assert rows["problem"] == [f"big-train-{i}" for i in range(4)]
    assert load_rows(f"{repo}@test", config_name="small")["problem"] == ["small-test-0", "small-test-1"]


def test_local_parquet_repo_keeps_images_undecoded(tmp_path):
    repo = tmp_path / "pq"
    (repo / "data").mkdir(parents=True)
    image_dataset(3).to_parquet(str(repo / "data" / "train-00000.parquet"))
    rows = load_rows(repo)
    assert isinstance(rows.features["image"], datasets.Image) and not rows.features["image"].decode
    assert decode_image(rows[0]["image"]).size == (8, 8)
    single = load_rows(repo / "data" / "train-00000.parquet")
    assert len(single) == 3 and not single.features["image"].decode


def test_hub_id_calls_load_dataset_with_split_and_config(monkeypatch):
    calls = []

    def fake_load_dataset(source, name=None, split=None, **kwargs):
        calls.append((source, name, split))
        ds = image_dataset(2)
        return ds if split else datasets.DatasetDict({"train": ds, "test": image_dataset(1)})

    monkeypatch.setattr(sources.datasets, "load_dataset", fake_load_dataset)
    rows = load_rows("laolao77/ViRFT_COCO_8_cate_4_shot@validation", config_name="default")
    assert calls[-1] == ("laolao77/ViRFT_COCO_8_cate_4_shot", "default", "validation")
    assert len(rows) == 2 and not rows.features["image"].decode
    assert len(load_rows("org/name")) == 2 and calls[-1] == ("org/name", None, None)


def test_hub_errors_are_one_line(monkeypatch):
    def missing(source, name=None, split=None, **kwargs):
        raise FileNotFoundError(f"Couldn't find a dataset script at\n{source}")

    monkeypatch.setattr(sources.datasets, "load_dataset", missing)
    with pytest.raises(FileNotFoundError) as info:
        load_rows("org/missing")
    assert "\n" not in str(info.value) and "org/missing" in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such file or folder, nor a Hub id"):
        load_rows("no/such/dataset/here")


def test_empty_saved_dataset(tmp_path):
    image_dataset(0).save_to_disk(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="has no rows"):
        load_rows(tmp_path / "empty")
    # Only the chosen split is read: an empty other split does not break the train split.
    splits = datasets.DatasetDict({"train": image_dataset(2), "test": image_dataset(0)})
    splits.save_to_disk(str(tmp_path / "dd"))
    assert len(load_rows(tmp_path / "dd")) == 2
    with pytest.raises(ValueError) as info:
        load_rows(tmp_path / "dd", split="test")
    assert str(info.value) == f"dataset {tmp_path / 'dd'} (split 'test') has no rows"
    with pytest.raises(ValueError, match="single saved dataset; it has no split 'test'"):
        load_rows(tmp_path / "empty", split="test")
