"""Detection answers into the one COCO scoring path (vrft.verifiers.evaluation.detection): a completion's
boxes become detections, and perfect answers score AP 1 (tests/test_eval_benchmarks.py checks that
path against COCOeval run directly)."""

from __future__ import annotations

import pytest

from vrft.verifiers.evaluation import detection as det

CATS = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}]


def test_completion_to_detections() -> None:
    answer = "<think>t</think><answer>[{'Position': [10, 20, 300, 400], 'Confidence': 0.7}]</answer>"
    assert det.detections_from_completion(answer, 5, 3) == [
        {"image_id": 5, "category_id": 3, "box": [10, 20, 300, 400], "score": 0.7}]
    assert det.detections_from_completion("<answer>No Objects</answer>", 5, 3) == []
    assert det.detections_from_completion("no answer at all", 5, 3) == []


def test_perfect_answers_from_completions_score_one() -> None:
    images = [{"id": 1, "width": 640, "height": 480}, {"id": 2, "width": 300, "height": 500}]
    truth = [(1, 1, [100, 100, 400, 500]), (2, 3, [10, 20, 990, 700])]  # image, category, 0–1000 box
    annotations = []
    for n, (img, cat, (x1, y1, x2, y2)) in enumerate(truth, 1):
        w, h = images[img - 1]["width"] / 1000, images[img - 1]["height"] / 1000
        annotations.append({"id": n, "image_id": img, "category_id": cat,
                            "bbox": [x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h]})
    gt = {"images": images, "annotations": annotations, "categories": CATS}
    dets = []
    for img, cat, box in truth:
        completion = f"<think>t</think><answer>[{{'Position': {box}, 'Confidence': 0.9}}]</answer>"
        dets += det.detections_from_completion(completion, img, cat)
    got = det.subset_map(gt, dets, {"mAP": ["cat", "dog"]})
    assert got["metrics"]["mAP"] == pytest.approx(1.0)
    assert got["per_class"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}
