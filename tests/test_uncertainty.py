"""Evaluation numbers with their uncertainty (verifiers/evaluation/uncertainty.py): pass@k against its
definition, maj@k and mean@k, and bootstrap intervals that cover the true rate at about the nominal
frequency on simulated test sets; COCO mAP resampled over images."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vrft.verifiers.evaluation import benchmarks as B
from vrft.verifiers.evaluation.detection import query_id
from vrft.verifiers.evaluation.uncertainty import (
    bootstrap_interval,
    maj_at_k,
    mean_at_k,
    mean_interval,
    pass_at_k,
    resample_detection,
    resample_existence_map,
)


@pytest.mark.parametrize("n, c, k", [(5, 0, 1), (5, 2, 1), (5, 2, 3), (6, 3, 4), (6, 1, 6), (7, 4, 2)])
def test_pass_at_k_is_the_share_of_k_subsets_holding_a_correct_sample(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    by_count = sum(any(s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(by_count)
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_edges_and_large_n():
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 6, 5) == 1.0 and pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(1000, 10, 100) == pytest.approx(1 - math.comb(990, 100) / math.comb(1000, 100))
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_maj_and_mean_at_k():
    answers, correct = ["3", "4", "3", None, "4", "4"], [True, False, True, False, False, False]
    assert maj_at_k(answers, correct, 3) == 1.0  # "3" twice among the first three
    assert maj_at_k(answers, correct, 6) == 0.0  # "4" three times
    assert maj_at_k(answers, correct, 2) == 1.0  # a tie: the answer seen first
    assert maj_at_k([None, None], [False, False], 2) == 0.0
    assert mean_at_k([1.0, 0.0, 1.0, 1.0], 2) == 0.5 and mean_at_k([1.0, 0.0, 1.0, 1.0], 4) == 0.75


def test_intervals_cover_the_true_rate_at_about_the_nominal_frequency():
    """400 simulated test sets of 200 items with a true accuracy of 0.7. A 95% interval should miss
    the true rate about 20 times in 400. The tolerance: the observed coverage of 400 sets has a
    standard error of sqrt(0.95 * 0.05 / 400) = 0.011, and the percentile bootstrap of a mean runs
    about a point under nominal at n = 200 (its intervals are a little narrow: Efron & Tibshirani
    1993, ch. 14); 0.91-0.985 is nominal within about 3 standard errors, with that shortfall allowed."""
    rng = np.random.default_rng(2107)
    true_rate, n_items, n_sets = 0.7, 200, 400
    covered = 0
    for i in range(n_sets):
        scores = (rng.random(n_items) < true_rate).astype(float)
        low, high = mean_interval(scores, seed=i)
        covered += low <= true_rate <= high
    coverage = covered / n_sets
    assert 0.91 <= coverage <= 0.985, coverage


def test_an_interval_is_seeded_and_holds_the_estimate():
    scores = [1.0] * 70 + [0.0] * 30
    assert mean_interval(scores, seed=3) == mean_interval(scores, seed=3)
    low, high = mean_interval(scores)
    assert low < 0.7 < high and 0.05 < high - low < 0.25  # about ±1.96 * sqrt(.21 / 100) = ±0.09
    general = bootstrap_interval(len(scores), lambda idx: float(np.mean(np.asarray(scores)[idx])))
    assert general[0] < 0.7 < general[1] and abs((general[1] - general[0]) - (high - low)) < 0.04


def test_coco_map_resampled_over_images():
    from test_eval_benchmarks import answer, coco_fixture

    gt, emap, answers = coco_fixture(seed=5)
    bench = B.get_benchmark("coco_fewshot_8")
    queries = B.benchmark_queries(bench.name, gt, existence_map=emap)
    records = [{"id": q, "completion": answer(answers[img, name])} for q, (img, name) in queries.items()]
    base = B.score_report(bench.name, records, gt, scoring="strict", existence_map=emap)["metrics"]

    ids = [im["id"] for im in gt["images"]]
    same_gt, same_records = resample_detection(gt, records, ids, query_id)  # every image once: nothing moves
    again = B.score_report(bench.name, same_records, same_gt, scoring="strict",
                           existence_map=resample_existence_map(emap, ids))["metrics"]
    assert again == pytest.approx(base)

    twice = [ids[0], ids[0], ids[1]]  # an image drawn twice is two images, with its boxes and answers
    new_gt, new_records = resample_detection(gt, records, twice, query_id)
    first = [a for a in gt["annotations"] if a["image_id"] == ids[0]]
    assert [im["id"] for im in new_gt["images"]] == [1, 2, 3]
    assert sum(a["image_id"] == 2 for a in new_gt["annotations"]) == len(first)
    assert len({a["id"] for a in new_gt["annotations"]}) == len(new_gt["annotations"])
    per_image = sum(q[0] == ids[0] for q in queries.values())
    assert sum(r["id"].startswith("2:") for r in new_records) == per_image

    metric = bench.metrics[0]

    def map_of(idx):
        drawn = [ids[i] for i in idx]
        g, r = resample_detection(gt, records, drawn, query_id)
        return B.score_report(bench.name, r, g, scoring="strict",
                              existence_map=resample_existence_map(emap, drawn))["metrics"][metric]

    low, high = bootstrap_interval(len(ids), map_of, resamples=60, seed=0)
    assert low <= base[metric] <= high and high - low > 1.0  # 24 images: a wide interval
