"""vrft.verifiers.evaluation.benchmarks: each benchmark's rescored metrics equal a direct computation (COCOeval run
here on independently converted boxes, or numbers worked out by hand), for both COCO query protocols
and the class-subset averages. LVIS's federated rules are in test_eval_lvis.py."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import re

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vrft.verifiers.evaluation import benchmarks as B
from vrft.verifiers.evaluation import classes as C
from vrft.verifiers.evaluation import item_scores as T

# ---- COCO fixture ----------------------------------------------------------------------------------

# Few-shot classes, novel classes and some base classes; the rest of the 80 have no ground truth.
USED = ["bus", "train", "fire hydrant", "stop sign", "cat", "dog", "bed", "toilet", "mouse", "fork",
        "hot dog", "bear", "person", "car", "chair", "pizza"]
IDS = {n: i for i, n in C.COCO_CATEGORIES}


def answer(boxes: list[tuple[list[int], float]]) -> str:
    if not boxes:
        return "<think>none here</think><answer>No Objects</answer>"
    items = ", ".join(f"{{'Position': {b}, 'Confidence': {c:.2f}}}" for b, c in boxes)
    return f"<think>looking</think> <answer>[{items}]</answer>"


def coco_fixture(seed: int) -> tuple[dict, dict, dict]:
    """GT (absolute xywh), an existence map with misses and false alarms, and per (image, class) the
    boxes a model would answer (0–1000 frame) if asked."""
    rng = random.Random(seed)
    images, anns, gt_boxes = [], [], {}
    for img in range(1, 25):
        w, h = rng.randint(200, 900), rng.randint(200, 900)
        images.append({"id": img, "width": w, "height": h})
        for _ in range(rng.randint(1, 5)):
            name = rng.choice(USED)
            x1, y1 = rng.randint(0, 700), rng.randint(0, 700)
            box = [x1, y1, x1 + rng.randint(20, 300), y1 + rng.randint(20, 300)]
            gt_boxes.setdefault((img, name), []).append(box)
            bb = [box[0] * w / 1000, box[1] * h / 1000, (box[2] - box[0]) * w / 1000, (box[3] - box[1]) * h / 1000]
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": IDS[name], "bbox": bb,
                         "area": bb[2] * bb[3], "iscrowd": 0})
    gt = {"images": images, "annotations": anns, "categories": C.coco_categories()}
    emap, answers = {}, {}
    for img in range(1, 25):
        present = {n for (i, n) in gt_boxes if i == img}
        emap[str(img)] = sorted({n for n in present if rng.random() < 0.8} | set(rng.sample(USED, 2)))
        for name in USED:
            out = []
            for b in gt_boxes.get((img, name), []):
                if rng.random() < 0.85:
                    j = [min(1000, max(0, v + rng.randint(-30, 30))) for v in b]
                    out.append(([j[0], j[1], max(j[2], j[0] + 5), max(j[3], j[1] + 5)], rng.random()))
            if rng.random() < 0.4:
                x, y = rng.randint(0, 800), rng.randint(0, 800)
                out.append(([x, y, x + 150, y + 120], rng.random()))
            answers[(img, name)] = [(b, round(c, 2)) for b, c in out]
    return gt, emap, answers


def direct_class_ap(gt: dict, dets: list[dict]) -> dict[str, float]:
    """COCOeval with its default parameters over all 80 classes; AP per class the paper's way."""
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    res = []
    for d in dets:
        w, h = size[d["image_id"]]
        x1, y1, x2, y2 = d["position"]
        res.append({"image_id": d["image_id"], "category_id": d["category_id"], "score": d["score"],
                    "bbox": [x1 / 1000 * w, y1 / 1000 * h, (x2 - x1) / 1000 * w, (y2 - y1) / 1000 * h]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt))
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(res), "bbox")
        ev.evaluate()
        ev.accumulate()
    names = {c["id"]: c["name"] for c in gt["categories"]}
    out = {}
    for k, cid in enumerate(ev.params.catIds):
        pr = ev.eval["precision"][:, :, k, 0, -1]
        out[names[cid]] = float(np.mean(pr[pr > -1])) if (pr > -1).any() else math.nan
    return out


def mean_over(ap: dict[str, float], names: tuple[str, ...]) -> float:
    vals = [ap[n] for n in names if not math.isnan(ap[n])]
    return 100 * sum(vals) / len(vals)


@pytest.mark.parametrize("bench", ["coco_fewshot_8", "coco_ov"])
@pytest.mark.parametrize("protocol", ["existence_map", "gt_categories"])
def test_coco_equals_cocoeval(bench: str, protocol: str) -> None:
    gt, emap, answers = coco_fixture(seed=len(bench) + len(protocol))
    b = B.get_benchmark(bench)
    asked = []  # the query set, worked out here from the protocol's definition
    for img in range(1, 25):
        present = set(emap[str(img)]) if protocol == "existence_map" else \
            {n for n in USED if any(a["image_id"] == img and a["category_id"] == IDS[n] for a in gt["annotations"])}
        asked += [(img, n) for n in b.classes if n in present]
    records = [{"id": f"{img}:{n}", "completion": answer(answers[img, n]), "answer": None, "score": None}
               for img, n in asked]
    dets = [{"image_id": img, "category_id": IDS[n], "position": box, "score": c}
            for img, n in asked for box, c in answers[img, n]]
    opts = {"existence_map": emap} if protocol == "existence_map" else {}
    # strict: the mean over the classes with ground truth, which COCOeval's own numbers give here (paper
    # scoring's NaN-propagating mean: tests/test_script_readings.py)
    report = B.score_report(bench, records, gt, scoring="strict", **opts)
    assert report["protocol"] == protocol
    assert report["counts"] == {"items": len(asked), "predictions": len(asked), "missing": 0,
                                "detections": len(dets)}
    ap = direct_class_ap(gt, dets)
    for metric, names in b.subsets.items():
        assert report["metrics"][metric] == pytest.approx(mean_over(ap, names), abs=1e-6)
    for n in b.classes:
        assert (math.isnan(ap[n]) and math.isnan(report["per_class"][n])) or \
            report["per_class"][n] == pytest.approx(100 * ap[n], abs=1e-6)
    assert set(report["metrics"]) == set(b.metrics)


def test_coco_queries_missing_records_and_map_file(tmp_path) -> None:
    gt, emap, answers = coco_fixture(seed=3)
    queries = B.benchmark_queries("coco_fewshot_8", gt, existence_map=emap)
    assert all(n in C.COCO_FEWSHOT_8 and n in emap[str(i)] for i, n in queries.values())
    path = tmp_path / "exist_map.json"
    path.write_text(json.dumps(emap))
    # No records: every query is missing, AP 0 wherever there is ground truth.
    got = B.score_report("coco_fewshot_8", [], gt, existence_map=str(path))
    assert got["metrics"]["mAP"] == 0.0 and got["counts"]["missing"] == len(queries)
    # A pair the existence map did not list is not a query under that protocol.
    unlisted = next(f"{i}:{n}" for i in range(1, 25) for n in C.COCO_FEWSHOT_8 if n not in emap[str(i)])
    with pytest.raises(ValueError, match=f"record 0: id '{unlisted}' is not a query of coco_fewshot_8 under the "
                                         "existence_map protocol"):
        B.rescore("coco_fewshot_8", [{"id": unlisted, "completion": "x"}], gt, existence_map=emap)
    with pytest.raises(ValueError, match="no entry for image"):
        B.rescore("coco_fewshot_8", [], gt, existence_map={"1": ["bus"]})
    with pytest.raises(ValueError, match="category 'unicorn'"):
        B.rescore("coco_fewshot_8", [], gt, existence_map={**emap, "1": ["unicorn"]})
    with pytest.raises(ValueError, match="takes no option 'iou'"):
        B.rescore("coco_fewshot_8", [], gt, iou=0.5)


# ---- record validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("records", "message"), [
    ([{"id": "a", "completion": "x"}, {"id": "b"}], "prediction record 1 (id 'b') has no 'completion' field"),
    ([{"completion": "x"}], "prediction record 0 (id None) has no 'id' field"),
    ([{"id": "zz", "completion": "x"}], "prediction record 0: id 'zz' is not an item of the flower102 ground truth"),
    ([{"id": "a", "completion": "x"}, {"id": "a", "completion": "y"}], "record 1: id 'a' appears twice"),
    ([{"id": "a", "completion": 3}], "record 0 (id 'a'): completion is not a string"),
    (["a"], "prediction record 0 is a str"),
])
def test_bad_records_raise_one_line(records: list, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        B.rescore("flower102", records, {"a": "rose", "b": "daisy"})
    assert "\n" not in str(err.value)


def test_unknown_benchmark_and_alias() -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'coco'"):
        B.get_benchmark("coco")
    assert B.get_benchmark("lisa").name == "lisa_test"


# ---- the other benchmarks, against hand-computed values -----------------------------------------------


def rec(i: str, completion: str) -> dict:
    return {"id": i, "completion": completion}


def test_classification_both_tests() -> None:
    labels = {"a": "pink_primrose", "b": "lenten rose", "c": "sunflower", "d": "rose", "e": "daisy"}
    records = [rec("a", "<think>t</think><answer>Pink Primrose</answer>"),
               rec("b", "<think>t</think><answer>rose</answer>"),  # substring of the label: paper yes
               rec("c", "sunflower"),  # no tag: wrong in both
               rec("e", "<answer>daisy or rose</answer>")]  # contains the label: paper yes
    got = B.score_report("pets37", records, labels)
    assert got["metrics"] == {"accuracy": pytest.approx(60.0), "accuracy_exact": pytest.approx(20.0)}
    assert got["counts"]["missing"] == 1


def test_lisa_box_miou_and_masks() -> None:
    g = {"box": [64, 48, 320, 240], "width": 640, "height": 480}  # normalised [.1, .1, .5, .5]
    gt = {k: dict(g) for k in "xyzw"}
    records = [rec("x", "<think>t</think><answer>(100,100),(500,500)</answer>"),
               rec("y", "<answer>(100, 100), (300, 500)</answer>"),
               rec("w", "<think>(0,0),(100,100) first</think><answer>(100,100),(500,500)</answer>")]
    expected = (0.16 / (0.16 + 1e-6) + 0.08 / (0.16 + 1e-6) + 0 + 0) / 4  # z has no record, w's box is first
    assert B.rescore("lisa_test", records, gt) == {"mIoU": pytest.approx(100 * expected, abs=1e-9)}

    gm = np.zeros((4, 10, 10), bool)
    gm[:, 2:6, 2:6] = True  # 16 pixels each
    pm = np.zeros((4, 10, 10), bool)
    pm[0, 2:6, 2:6] = True  # I 16, U 16
    pm[1, 4:8, 2:6] = True  # I 8, U 24
    for k, key in enumerate("xyzw"):
        gt[key]["mask"] = gm[k]
    records[0]["mask"] = T.mask_to_rle(pm[0])  # RLE as records store it
    records[1]["mask"] = pm[1].tolist()
    records[2]["mask"] = pm[3]  # w: empty mask; z: no record at all (an empty mask, union 16)
    got = B.rescore("lisa_test", records, gt)
    ious = [16 / (16 + 1e-6), 8 / (24 + 1e-6), 0.0, 0.0]
    assert got["gIoU"] == pytest.approx(100 * sum(ious) / 4, abs=1e-9)
    assert got["cIoU"] == pytest.approx(100 * 24 / (16 + 24 + 16 + 16 + 1e-6), abs=1e-9)
    del gt["z"]["mask"]
    with pytest.raises(ValueError, match="item 'z' has no mask"):
        B.rescore("lisa_test", records, gt)


def test_lisa_polygon_mask() -> None:
    m = T.polygon_mask([[2, 2], [5, 2], [5, 5], [2, 5]], height=8, width=10)
    assert m.shape == (8, 10) and m.sum() == 16 and m[2:6, 2:6].all()


def test_counting_and_structure_accuracy() -> None:
    a = "<think>t</think><answer>{}</answer>".format
    got = B.score_report("clevr_math", [rec("1", a(" 3 ")), rec("2", a("\\frac{1}{2}")), rec("3", a("4"))],
                         {"1": "3", "2": "0.5", "3": "5", "4": "7"})
    assert got["metrics"] == {"accuracy": pytest.approx(50.0)}
    got = B.score_report("geomath", [rec("p", a("A")), rec("q", a("13"))], {"p": "A", "q": "12"})
    assert got["metrics"]["accuracy"] == pytest.approx(50.0)
    assert got["by_type"] == {"choice": pytest.approx(100.0), "non_choice": pytest.approx(0.0)}


def test_trance_partial_credit() -> None:
    a = "<think>t</think><answer>{}</answer>".format
    gt = {"1": "change_color(1, 'red') change_size(2, 'large')", "2": "change_color(1, 'red')",
          "3": "change_position(1, 'front') change_color(2, 'red')"}
    records = [rec("1", a("change_color(1, 'red') change_size(2, 'small') change_size(2, 'small')")),
               rec("2", a("change_shape(3, 'cube')")),
               rec("3", a("change_position(2, 'front')"))]
    # 1: two unique items, 1/2 each: exact + (func, obj) half = .75 (no duplicate penalty, unlike the
    # reward); 2: nothing shared; 3: 1/max(1, 2) × (func, value) half = .25.
    assert B.rescore("trance_left", records, gt) == {"score": pytest.approx(100 * (0.75 + 0 + 0.25) / 3)}


def test_prediction_records() -> None:
    r = B.prediction_record("lisa_val", 7, "<answer>(1,2),(30,40)</answer>", {"box": [0, 0, 64, 48],
                                                                               "width": 640, "height": 480})
    assert r["answer"] == [1, 2, 30, 40] and 0 < r["score"] < 1
    r = B.prediction_record("coco_ov", "5:cat", answer([([1, 2, 30, 40], 0.5)]))
    assert r["answer"] == [{"box": [1, 2, 30, 40], "score": 0.5}] and r["score"] is None
    assert B.prediction_record("trance", "t", "<answer>\n change_color(1, 'red')</answer>",
                               "change_color(1, 'red')")["score"] == 1.0
    assert B.prediction_record("aircraft", 1, "<answer>Boeing 707-320</answer>", "707-320")["score"] == 1.0


# ---- the registry --------------------------------------------------------------------------------------


def test_registry_protocols() -> None:
    names = set(B.list_benchmarks())
    assert names >= {"coco_fewshot_8", "coco_ov", "lvis_fewshot", "lvis_ov", "flower102", "pets37", "cars196",
                     "aircraft", "lisa_test", "lisa_val", "clevr_math", "super_clevr", "geomath",
                     "geometry3k", "trance", "trance_left", "trance_right"}
    for n in names:
        b = B.get_benchmark(n)
        for rows in b.paper.values():
            for row in rows.values():
                assert set(row) <= set(b.metrics)
        if b.kind in ("answer", "trance"):
            assert (b.sampling, b.r1_system_prompt, b.max_pixels) == (B.REASON_RFT, False, 480_000)
            assert (b.sampling.temperature, b.sampling.top_p, b.sampling.top_k, b.sampling.max_new_tokens) == \
                (0.1, 0.9, 50, 768)
        elif b.kind == "lisa":
            assert b.sampling.greedy and b.sampling.max_new_tokens == 128 and b.r1_system_prompt
        else:
            assert b.sampling.greedy and b.sampling.max_new_tokens == 1024 and not b.r1_system_prompt
    assert B.get_benchmark("coco_ov").paper["7B"]["RFT"] == {"mAP_n": 35.8, "mAP_b": 25.4, "mAP_all": 27.4}
    assert len(B.get_benchmark("coco_ov").subsets["mAP_b"]) == 65
    assert B.get_benchmark("lvis_ov").classes == C.LVIS_OV_RARE_13


def test_group_averages_match_member_columns() -> None:
    """The printed averages are the means of the printed columns (to rounding): a transcription check.
    The one exception is noted in paper_numbers (2B RFT-Zero spatial prints 33.74)."""
    for group, (members, metric) in B.GROUPS.items():
        for size, rows in B.GROUP_PAPER[group].items():
            for setting, avg in rows.items():
                cols = [B.get_benchmark(m).paper.get(size, {}).get(setting, {}).get(metric) for m in members]
                if None in cols or (group, size, setting) == ("spatial", "2B", "RFT-Zero"):
                    continue
                assert sum(cols) / len(cols) == pytest.approx(avg, abs=0.051), (group, size, setting)
