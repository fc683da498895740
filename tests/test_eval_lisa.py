"""LISA end to end: `vrft prepare-data lisa` builds rows as Visual-RFT's gen_box_ann.py builds its
evaluation annotations (the first instruction, `shapes[0]` whatever its label, its float pixel box, its
polygon mask), and `vrft eval lisa_test --predictions` scores them as the released scripts do
(paper) and with vrft's own reading beside it (strict). Every expected number is worked by hand from
the scripts' rules (Qwen2_VL_lisa_infere.py: IoU = I / (A + B - I + 1e-6) on boxes divided by 1000
and by W/H; mask_iou.py: gIoU = mean I / (U + 1e-6), cIoU = sum I / (sum U + 1e-6))."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vrft.orchestrator.cli.main import main
from vrft.orchestrator.data.sources import load_rows


def labelme(texts: list[str], shapes: list[tuple[str, list[list[float]]]], name: str, width: int,
            height: int) -> dict:
    """A ReasonSeg annotation as the released files hold it (LabelMe's fields plus `text` and
    `is_sentence`)."""
    return {"version": "4.5.6", "flags": {},
            "shapes": [{"label": label, "points": points, "group_id": None, "shape_type": "polygon", "flags": {}}
                       for label, points in shapes],
            "imagePath": f"{name}.jpg", "imageData": None, "imageHeight": height, "imageWidth": width,
            "text": texts, "is_sentence": True}


def rect(x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def reasonseg(folder: Path, annotations: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, meta in annotations.items():
        Image.new("RGB", (meta["imageWidth"], meta["imageHeight"]), (90, 120, 60)).save(folder / f"{name}.jpg")
        (folder / f"{name}.json").write_text(json.dumps(meta, indent=2))
    return folder


def prepared(tmp_path: Path, annotations: dict[str, dict], *options: str) -> Path:
    out = tmp_path / "lisa_test"
    assert main(["prepare-data", "lisa", str(reasonseg(tmp_path / "ReasonSeg" / "test", annotations)), str(out),
                 *options]) == 0
    return out


def rescore(tmp_path: Path, data: Path, records: list[dict], scoring: str, *args: str) -> dict:
    preds = tmp_path / "predictions.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / f"out_{scoring}"
    assert main(["eval", "lisa_test", "--predictions", str(preds), "--data", str(data), "--scoring", scoring,
                 "--out", str(out), *args]) == 0
    return json.loads((out / "metrics.json").read_text())


# The prediction (100,100),(300,300) in a 1000 x 1000 image: 0.2 x 0.2, area 0.04 in the script's units.
HIT = "<think>…</think><answer>(100,100),(300,300)</answer>"
EXACT = 100 * 0.04 / (0.04 + 1e-6)  # 99.9975000625: a perfect box still pays the script's 1e-6


def test_l1_the_float_pixel_box(tmp_path):
    # shapes[0] is 100.6..300.6 on both axes. Paper: the float box, 0.1006..0.3006; the intersection
    # with 0.1..0.3 is 0.1994^2 = 0.03976036, the union 0.08 - 0.03976036 = 0.04023964, so
    # 0.03976036 / 0.04024064 = 0.988064804... Strict: int(100.6) = 100, int(300.6) = 300: the box itself.
    data = prepared(tmp_path, {"a": labelme(["the pot"], [("target", rect(100.6, 100.6, 300.6, 300.6))],
                                            "a", 1000, 1000)})
    records = [{"id": "0", "completion": HIT}]
    paper, strict = rescore(tmp_path, data, records, "paper"), rescore(tmp_path, data, records, "strict")
    assert paper["metrics"]["mIoU"] == pytest.approx(98.806480, abs=5e-7)
    assert paper["metrics"]["mIoU"] == pytest.approx(100 * 0.03976036 / (0.04023964 + 1e-6), abs=1e-9)
    assert strict["metrics"]["mIoU"] == pytest.approx(99.997500, abs=5e-7)
    assert strict["metrics"]["mIoU"] == pytest.approx(EXACT, abs=1e-9)
    row = load_rows(str(data))[0]
    assert row["box_px"] == [100.6, 100.6, 300.6, 300.6] and (row["width"], row["height"]) == (1000, 1000)
    assert row["solution"] == "<answer>(100,100),(300,300)</answer>"


def test_l2_only_the_first_instruction_is_an_item(tmp_path):
    # Two instructions, prepared with a row for each (--all-instructions): the script reads
    # instruction[0] only, so the one answer is the whole mean (99.9975); vrft's strict reading has a
    # row per instruction and the second has no prediction: (99.9975 + 0) / 2 = 49.99875.
    data = prepared(tmp_path, {"a": labelme(["the pot", "what boils water"],
                                            [("target", rect(100, 100, 300, 300))], "a", 1000, 1000)},
                    "--all-instructions")
    records = [{"id": "0", "completion": HIT}]
    paper, strict = rescore(tmp_path, data, records, "paper"), rescore(tmp_path, data, records, "strict")
    assert paper["metrics"]["mIoU"] == pytest.approx(99.997500, abs=5e-7)
    assert paper["counts"] == {"items": 1, "predictions": 1, "missing": 0}
    assert strict["metrics"]["mIoU"] == pytest.approx(49.998750, abs=5e-7)
    assert strict["metrics"]["mIoU"] == pytest.approx(EXACT / 2, abs=1e-9)
    assert strict["counts"] == {"items": 2, "predictions": 1, "missing": 1}
    # without --all-instructions: one row per image, the first instruction's
    assert len(load_rows(str(prepared(tmp_path / "one", {"a": labelme(
        ["the pot", "what boils water"], [("target", rect(100, 100, 300, 300))], "a", 1000, 1000)})))) == 1


def test_l3_shapes0_is_taken_whatever_its_label(tmp_path):
    # shapes[0] is an `ignore` region at 600..800: the script boxes it, and (100,100),(300,300) misses
    # it (intersection 0: IoU 0.0); vrft's strict reading takes the first polygon not labelled ignore.
    data = prepared(tmp_path, {"a": labelme(["the pot"], [("ignore", rect(600, 600, 800, 800)),
                                                          ("target", rect(100, 100, 300, 300))], "a", 1000, 1000)})
    records = [{"id": "0", "completion": HIT}]
    paper, strict = rescore(tmp_path, data, records, "paper"), rescore(tmp_path, data, records, "strict")
    assert paper["metrics"]["mIoU"] == 0.0
    assert strict["metrics"]["mIoU"] == pytest.approx(99.997500, abs=5e-7)
    assert load_rows(str(data))[0]["shape_label"] == "ignore"


def test_unscorable_annotations_go_to_a_sidecar(tmp_path, capsys):
    data = prepared(tmp_path, {"a": labelme(["the pot"], [("target", rect(1, 1, 9, 9))], "a", 20, 20),
                               "b": labelme([], [("target", rect(1, 1, 9, 9))], "b", 20, 20),
                               "c": labelme(["x"], [], "c", 20, 20)})
    assert "2 annotation files cannot be scored" in capsys.readouterr().out
    assert json.loads((data / "lisa_unscorable.json").read_text()) == [
        {"json": "b.json", "reason": "no instruction"}, {"json": "c.json", "reason": "no polygon"}]
    assert len(load_rows(str(data))) == 1


def test_ground_truth_masks_are_the_polygons(tmp_path):
    # PIL fills a polygon with its outline: the rectangle (100,200)-(300,400) covers 201 x 201 =
    # 40,401 pixels, (0,0)-(99,99) covers 100 x 100 = 10,000.
    from vrft.verifiers.evaluation.item_scores import to_mask

    data = prepared(tmp_path, {"a": labelme(["a"], [("target", rect(100, 200, 300, 400))], "a", 400, 500),
                               "b": labelme(["b"], [("target", rect(0, 0, 99, 99))], "b", 400, 500)})
    rows = load_rows(str(data))
    masks = [to_mask(r["mask"]) for r in rows]
    assert [int(m.sum()) for m in masks] == [40_401, 10_000]
    assert masks[0].shape == (500, 400) and masks[0][200, 100] and masks[0][400, 300] and not masks[0][199, 100]


def headline(report: dict) -> set[str]:
    """The report's metrics without their intervals (`_ci_low` / `_ci_high`)."""
    return {k for k in report["metrics"] if not k.endswith(("_ci_low", "_ci_high"))}


def test_giou_ciou_from_prepared_masks(tmp_path):
    # Item 0: the predicted mask is the ground truth (10,000 px): IoU 10000 / (10000 + 1e-6).
    # Item 1: the prediction is the top rows 200..300 of the 40,401 px ground truth, 201 x 101 =
    # 20,301 px inside it: IoU 20301 / 40401 = 101 / 201. gIoU = (1 + 101/201) / 2 = 75.124378 %;
    # cIoU = (10000 + 20301) / (10000 + 40401) = 30301 / 50401 = 60.119839 %.
    from vrft.verifiers.evaluation.item_scores import mask_to_rle, polygon_mask

    data = prepared(tmp_path, {"a": labelme(["a"], [("target", rect(0, 0, 99, 99))], "a", 400, 500),
                               "b": labelme(["b"], [("target", rect(100, 200, 300, 400))], "b", 400, 500)})
    records = [{"id": "0", "completion": HIT, "mask": mask_to_rle(polygon_mask(rect(0, 0, 99, 99), 500, 400))},
               {"id": "1", "completion": HIT, "mask": mask_to_rle(polygon_mask(rect(100, 200, 300, 300), 500, 400))}]
    report = rescore(tmp_path, data, records, "paper")
    assert report["metrics"]["gIoU"] == pytest.approx(75.124378, abs=5e-7)
    assert report["metrics"]["gIoU"] == pytest.approx(100 * (10000 / (10000 + 1e-6) + 20301 / (40401 + 1e-6)) / 2,
                                                      abs=1e-9)
    assert report["metrics"]["cIoU"] == pytest.approx(60.119839, abs=5e-7)
    # without predicted masks (no --sam) there is no gIoU / cIoU, rather than a 0 that looks measured
    assert headline(rescore(tmp_path, data, [{"id": "0", "completion": HIT}], "paper")) == {"mIoU"}


def test_sam_masks_when_rescoring_saved_predictions(tmp_path):
    # `--predictions FILE --sam`: SAM (a tiny random one, offline) turns each saved box into a mask,
    # scored against the masks prepare-data drew from the polygons.
    from vrft.testing.tiny_sam import make_tiny_sam

    sam = make_tiny_sam(tmp_path / "sam")
    data = prepared(tmp_path, {"a": labelme(["a"], [("target", rect(4, 4, 50, 30))], "a", 60, 40)})
    report = rescore(tmp_path, data, [{"id": "0", "completion": "<answer>(100,100),(800,700)</answer>"}],
                     "paper", "--sam", str(sam))
    assert headline(report) == {"mIoU", "gIoU", "cIoU"}
    assert 0 < report["metrics"]["gIoU"] <= 100  # the box's mask is not empty and meets the polygon's
