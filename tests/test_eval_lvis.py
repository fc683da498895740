"""LVIS federated AP (vrft.verifiers.evaluation.detection on pycocotools): hand-computed cases for each federated
rule, and equality with the official ``lvis.LVISEval`` (when the ``lvis`` package is installed) on a
random fixture that exercises negative / unverified / not-exhaustive classes and the 300-per-image cap."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from vrft.verifiers.evaluation import benchmarks as B
from vrft.verifiers.evaluation import classes as C

FEW = list(C.LVIS_FEWSHOT_6)


def pos(box: list[int], conf: float) -> str:
    return f"{{'Position': {box}, 'Confidence': {conf}}}"


def completion(*items: str) -> str:
    return f"<think>t</think><answer>[{', '.join(items)}]</answer>"


def hand_gt(neg2: list[int], nel1: list[int]) -> dict:
    """Two 100×100 images; one papaya (id 5) on image 1 at pixels 10..40."""
    cats = [{"id": i + 1, "name": n, "frequency": "r"} for i, n in enumerate(FEW)]
    images = [{"id": 1, "width": 100, "height": 100, "neg_category_ids": [], "not_exhaustive_category_ids": nel1},
              {"id": 2, "width": 100, "height": 100, "neg_category_ids": neg2, "not_exhaustive_category_ids": []}]
    anns = [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 30, 30], "area": 900}]
    return {"images": images, "annotations": anns, "categories": cats}


HIT = pos([100, 100, 400, 400], 0.9)  # exactly the ground-truth box, in the 0–1000 frame
MISS = pos([600, 600, 900, 900], 0.95)  # scored higher, matches nothing


@pytest.mark.parametrize(("neg2", "nel1", "records", "ap"), [
    # A detection on an image where papaya is neither annotated nor a verified negative is not counted.
    ([], [], {"1:papaya": completion(HIT), "2:papaya": completion(MISS)}, 100.0),
    # Where papaya is a verified negative it is a false positive ranked first: precision 1/2 at every recall.
    ([5], [], {"1:papaya": completion(HIT), "2:papaya": completion(MISS)}, 50.0),
    # An unmatched papaya where papaya is not exhaustively annotated is ignored ...
    ([], [5], {"1:papaya": completion(HIT, MISS)}, 100.0),
    # ... and counts as a false positive where it is.
    ([], [], {"1:papaya": completion(HIT, MISS)}, 50.0),
])
def test_federated_rules_by_hand(neg2: list, nel1: list, records: dict, ap: float) -> None:
    emap = {"1": ["papaya"], "2": ["papaya"]}
    recs = [{"id": k, "completion": v} for k, v in records.items()]
    got = B.score_report("lvis_fewshot", recs, hand_gt(neg2, nel1), existence_map=emap, scoring="strict")
    assert got["per_class"]["papaya"] == pytest.approx(ap, abs=1e-9)
    assert got["metrics"] == {"mAP": pytest.approx(ap, abs=1e-9)}  # strict: the other five have no ground truth
    paper = B.score_report("lvis_fewshot", recs, hand_gt(neg2, nel1), existence_map=emap)
    assert math.isnan(paper["metrics"]["mAP"]) and "no ground truth for" in paper["warnings"][-1]


def test_missing_federated_fields_raise() -> None:
    gt = hand_gt([], [])
    del gt["images"][1]["neg_category_ids"]
    with pytest.raises(ValueError, match="LVIS image 2 has no 'neg_category_ids'"):
        B.rescore("lvis_fewshot", [{"id": "1:papaya", "completion": completion(HIT)}], gt,
                  protocol="gt_categories")


# ---- against lvis.LVISEval -------------------------------------------------------------------------------

NAMES = list(dict.fromkeys(C.LVIS_OV_RARE_13 + C.LVIS_FEWSHOT_6)) + ["apple", "banana"]


def lvis_fixture(seed: int) -> tuple[dict, dict, dict]:
    """GT, an existence map (misses, verified negatives and unverified classes alike) and the answers."""
    rng = random.Random(seed)
    cats = [{"id": i + 1, "name": n, "frequency": "r" if n in C.LVIS_OV_RARE_13 else "c"}
            for i, n in enumerate(NAMES)]
    ids = {c["name"]: c["id"] for c in cats}
    images, anns, boxes = [], [], {}
    for img in range(1, 31):
        w, h = rng.randint(200, 800), rng.randint(200, 800)
        present = rng.sample(NAMES, rng.randint(0, 3)) if img != 1 else ["die", "omelet"]
        for name in present:
            for _ in range(rng.randint(1, 3)):
                x, y = rng.randint(0, 700), rng.randint(0, 700)
                b = [x, y, x + rng.randint(20, 300), y + rng.randint(20, 300)]
                boxes.setdefault((img, name), []).append(b)
                bb = [b[0] * w / 1000, b[1] * h / 1000, (b[2] - b[0]) * w / 1000, (b[3] - b[1]) * h / 1000]
                anns.append({"id": len(anns) + 1, "image_id": img, "category_id": ids[name], "bbox": bb,
                             "area": bb[2] * bb[3]})
        absent = [n for n in NAMES if n not in present]
        images.append({"id": img, "width": w, "height": h,
                       "neg_category_ids": [ids[n] for n in rng.sample(absent, 4)],
                       "not_exhaustive_category_ids": [ids[n] for n in present if rng.random() < 0.4]})
    gt = {"images": images, "annotations": anns, "categories": cats}
    emap, answers = {}, {}
    for img in range(1, 31):
        present = {n for (i, n) in boxes if i == img}
        emap[str(img)] = sorted({n for n in present if rng.random() < 0.85} | set(rng.sample(NAMES, 3)))
        for name in NAMES:
            out = [([min(1000, max(0, v + rng.randint(-25, 25))) for v in b], round(rng.random(), 2))
                   for b in boxes.get((img, name), []) if rng.random() < 0.85]
            out += [([x, y, x + 100, y + 90], round(rng.random(), 2))
                    for x, y in ((rng.randint(0, 800), rng.randint(0, 800)) for _ in range(rng.randint(0, 2)))]
            answers[img, name] = [(b, c) for b, c in out if b[2] > b[0] and b[3] > b[1]]
    # Image 1: 2 × 170 detections, so LVIS's 300-per-image cap (over all classes) drops 40.
    for name in ("die", "omelet"):
        answers[1, name] = [([x, y, x + 120, y + 100], round(rng.random(), 4))
                            for x, y in rng.sample([(x, y) for x in range(0, 850, 10) for y in range(0, 850, 10)], 170)]
    return gt, emap, answers


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # lvis' own logger.warn
def test_equals_lvis_eval(tmp_path, monkeypatch) -> None:
    pytest.importorskip("cv2")  # lvis imports its visualiser (matplotlib, OpenCV) on import
    lvis = pytest.importorskip("lvis")
    # lvis 0.5.3, the only PyPI release, uses np.float (removed in numpy 1.24) in accumulate().
    monkeypatch.setattr(np, "float", float, raising=False)
    gt, emap, answers = lvis_fixture(seed=0)
    path = tmp_path / "lvis_gt.json"
    path.write_text(json.dumps(gt))
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    ids = {c["name"]: c["id"] for c in gt["categories"]}
    lvis_gt = lvis.LVIS(str(path))
    for bench in ("lvis_fewshot", "lvis_ov"):
        b = B.get_benchmark(bench)
        asked = [(int(i), n) for i, names in emap.items() for n in names if n in b.classes]
        assert any(len(answers[q]) for q in asked)
        results = []
        for img, n in asked:
            w, h = size[img]
            results += [{"image_id": img, "category_id": ids[n], "score": c,
                         "bbox": [x1 * w / 1000, y1 * h / 1000, (x2 - x1) * w / 1000, (y2 - y1) * h / 1000]}
                        for (x1, y1, x2, y2), c in answers[img, n]]
        ev = lvis.LVISEval(lvis_gt, lvis.LVISResults(lvis_gt, results, max_dets=300), "bbox")
        ev.params.cat_ids = sorted(ids[n] for n in b.classes)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        expected = {}
        for k, cid in enumerate(ev.params.cat_ids):
            pr = ev.eval["precision"][:, :, k, 0]
            expected[cid] = float(np.mean(pr[pr > -1])) if (pr > -1).any() else float("nan")

        records = [{"id": f"{img}:{n}", "completion": completion(*(pos(bx, c) for bx, c in answers[img, n]))}
                   for img, n in asked]
        got = B.score_report(bench, records, str(path), existence_map=emap)
        valid = [v for v in expected.values() if v == v]
        assert got["metrics"]["mAP"] == pytest.approx(100 * sum(valid) / len(valid), abs=1e-6)
        for n in b.classes:
            e = expected[ids[n]]
            assert (e != e and got["per_class"][n] != got["per_class"][n]) or \
                got["per_class"][n] == pytest.approx(100 * e, abs=1e-6), n
        if bench == "lvis_ov":  # the 13 are exactly the fixture's rare group: LVIS's own APr
            assert got["metrics"]["mAP"] == pytest.approx(100 * ev.results["APr"], abs=1e-6)
