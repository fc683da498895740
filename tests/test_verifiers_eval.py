"""vrft.verifiers.eval: the COCO mAP helper equals COCOeval run directly; the other metrics on known data."""

from __future__ import annotations

import contextlib
import io
import math
import random

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vrft.verifiers import eval as veval

CATS = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "toilet"}]


def synthetic(seed: int) -> tuple[list, list, list]:
    """Images of random sizes, GT boxes in 0–1000, predictions: jittered hits, misses, false alarms."""
    rng = random.Random(seed)
    images, gts, preds = [], [], []
    for img_id in range(1, 16):
        images.append({"id": img_id, "width": rng.randint(200, 900), "height": rng.randint(200, 900)})
        for _ in range(rng.randint(1, 4)):
            cat = rng.choice(CATS)["id"]
            x1, y1 = rng.randint(0, 700), rng.randint(0, 700)
            box = [x1, y1, x1 + rng.randint(30, 300), y1 + rng.randint(30, 300)]
            gts.append({"image_id": img_id, "category_id": cat, "box": box})
            if rng.random() < 0.8:
                j = [v + rng.randint(-25, 25) for v in box]
                preds.append({"image_id": img_id, "category_id": cat, "box": j, "score": rng.random()})
        for _ in range(rng.randint(0, 2)):
            x1, y1 = rng.randint(0, 800), rng.randint(0, 800)
            preds.append({"image_id": img_id, "category_id": rng.choice(CATS)["id"],
                          "box": [x1, y1, x1 + 100, y1 + 100], "score": rng.random()})
    return images, gts, preds


def cocoeval_directly(images: list, gts: list, preds: list, cat_ids: list[int] | None = None) -> list[float]:
    """COCOeval on the same data, with the conversion written out here independently."""
    size = {im["id"]: (im["width"], im["height"]) for im in images}

    def xywh(b: list, img: int) -> list[float]:
        w, h = size[img]
        return [b[0] * w / 1000, b[1] * h / 1000, (b[2] - b[0]) * w / 1000, (b[3] - b[1]) * h / 1000]

    anns = []
    for i, g in enumerate(gts):
        bb = xywh(g["box"], g["image_id"])
        anns.append({"id": i + 1, "image_id": g["image_id"], "category_id": g["category_id"], "bbox": bb,
                     "area": bb[2] * bb[3], "iscrowd": 0})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns, "categories": CATS}
        coco.createIndex()
        dets = coco.loadRes([{"image_id": p["image_id"], "category_id": p["category_id"],
                              "bbox": xywh(p["box"], p["image_id"]), "score": p["score"]} for p in preds])
        ev = COCOeval(coco, dets, "bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_helper_equals_cocoeval(seed: int) -> None:
    images, gts, preds = synthetic(seed)
    gt = veval.coco_gt_from_boxes(images, gts, CATS)
    got = veval.coco_map(gt, preds)
    present = sorted({g["category_id"] for g in gts})
    assert len(present) == 3  # with every class present, COCOeval's overall AP is the class mean
    stats = cocoeval_directly(images, gts, preds)
    assert got["mAP"] == pytest.approx(stats[0], abs=1e-12)
    assert got["AP50"] == pytest.approx(stats[1], abs=1e-12)
    for cat in CATS:  # per class: COCOeval restricted to that one category
        one = cocoeval_directly(images, gts, preds, cat_ids=[cat["id"]])
        assert got["per_class"][cat["name"]] == pytest.approx(one[0], abs=1e-12)
        assert got["per_class_AP50"][cat["name"]] == pytest.approx(one[1], abs=1e-12)
    assert 0.0 < got["mAP"] < 1.0


def test_map_over_chosen_classes_is_their_mean() -> None:
    images, gts, preds = synthetic(5)
    gt = veval.coco_gt_from_boxes(images, gts, CATS)
    full = veval.coco_map(gt, preds)
    sub = veval.coco_map(gt, preds, classes=["cat", 7])
    assert sub["mAP"] == pytest.approx((full["per_class"]["cat"] + full["per_class"]["toilet"]) / 2)
    assert set(sub["per_class"]) == {"cat", "toilet"}


def test_perfect_answers_from_completions_score_one() -> None:
    images = [{"id": 1, "width": 640, "height": 480}, {"id": 2, "width": 300, "height": 500}]
    gts = [{"image_id": 1, "category_id": 1, "box": [100, 100, 400, 500]},
           {"image_id": 2, "category_id": 3, "box": [10, 20, 990, 700]}]
    preds = []
    for g in gts:
        b = g["box"]
        completion = f"<think>t</think><answer>[{{'Position': {b}, 'Confidence': 0.9}}]</answer>"
        preds += veval.detections_from_completion(completion, g["image_id"], g["category_id"])
    got = veval.coco_map(veval.coco_gt_from_boxes(images, gts, CATS), preds)
    assert got["mAP"] == pytest.approx(1.0)
    assert got["per_class"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}


def test_no_predictions_and_unknown_images() -> None:
    images, gts, _ = synthetic(3)
    gt = veval.coco_gt_from_boxes(images, gts, CATS)
    assert veval.coco_map(gt, [])["mAP"] == 0.0
    with pytest.raises(ValueError, match="image"):
        veval.coco_map(gt, [{"image_id": 999, "category_id": 1, "box": [0, 0, 1, 1], "score": 1.0}])


def test_class_without_ground_truth_is_nan_and_left_out() -> None:
    images = [{"id": 1, "width": 100, "height": 100}]
    gts = [{"image_id": 1, "category_id": 1, "box": [0, 0, 500, 500]}]
    preds = [{"image_id": 1, "category_id": 1, "box": [0, 0, 500, 500], "score": 0.5}]
    got = veval.coco_map(veval.coco_gt_from_boxes(images, gts, CATS), preds, classes=["cat", "dog"])
    assert math.isnan(got["per_class"]["dog"]) and got["mAP"] == pytest.approx(1.0)


def test_other_metrics() -> None:
    a = "<think>t</think><answer>{}</answer>".format
    assert veval.classification_accuracy([a("Pink Primrose"), a("rose"), "pink primrose"],
                                         ["pink_primrose", "lenten rose", "pink primrose"]) == pytest.approx(2 / 3)
    assert veval.grounding_miou([a("(0,0),(100,100)"), a("(0,0),(50,100)"), a("none")],
                                [[0, 0, 100, 100]] * 3) == pytest.approx(0.5)
    assert veval.answer_accuracy([a("3"), a("\\frac{1}{2}"), a("4")], ["3", "0.5", "5"]) == pytest.approx(2 / 3)
    gt = "change_color(1, 'red') change_size(2, 'large')"
    assert veval.trance_score([a(gt), a("change_color(1, 'red') change_size(2, 'small')")], [gt, gt]) == \
        pytest.approx((1.0 + 0.75) / 2)
    assert veval.mean_reward("format", [], []) == 0.0
