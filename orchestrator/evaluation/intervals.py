"""Each benchmark number with its 95% bootstrap interval, and the k-sample metrics of `vrft eval
--samples k`, from the pure functions of vrft.verifiers.evaluation.uncertainty.

    add_intervals(eval_set, records, report)   report["metrics"][m + "_ci_low" / "_ci_high"]
    k_sample_metrics(eval_set, samples, k)     pass@k, maj@k, mean@k (×100) with their intervals

The unit resampled is what the test set samples: the item (one question, one image to classify or
ground), or for COCO/LVIS the image with all its queries and boxes (mAP recomputed per resample).
An item-mean metric takes its interval from the records' per-item scores, and only where their
mean is the reported number (the headline metric: accuracy, mIoU); the others (accuracy_exact,
LISA's gIoU/cIoU) go without one rather than with a wrong one.
"""

from __future__ import annotations

import math
from typing import Any

from vrft.verifiers.evaluation.benchmarks import prediction_record, score_report
from vrft.verifiers.evaluation.detection import query_id
from vrft.verifiers.evaluation.uncertainty import (
    CONFIDENCE,
    bootstrap_intervals,
    maj_at_k,
    mean_at_k,
    mean_interval,
    pass_at_k,
    resample_detection,
    resample_existence_map,
)

ITEM_RESAMPLES = 1000
IMAGE_RESAMPLES = 200  # each one rescores the whole set: mAP has no per-item score to resample
CI = ("_ci_low", "_ci_high")


def _put(metrics: dict[str, float], name: str, interval: tuple[float, float]) -> None:
    metrics[name + CI[0]], metrics[name + CI[1]] = interval


def detection_intervals(eval_set, records: list[dict], seed: int,
                        resamples: int = IMAGE_RESAMPLES) -> dict[str, tuple[float, float]]:
    """Every metric of a COCO/LVIS benchmark, bootstrapped over its images."""
    gt = getattr(eval_set.ground_truth, "dataset", eval_set.ground_truth)  # a dict, or a COCO object's
    ids = [im["id"] for im in gt["images"]]
    options = dict(eval_set.options)
    emap = options.pop("existence_map", None)

    def metrics_of(indices) -> dict[str, float]:
        drawn = [ids[i] for i in indices]
        new_gt, new_records = resample_detection(gt, records, drawn, query_id)
        extra = {"existence_map": resample_existence_map(emap, drawn)} if emap is not None else {}
        return score_report(eval_set.benchmark.name, new_records, new_gt, **options, **extra)["metrics"]

    return bootstrap_intervals(len(ids), metrics_of, resamples=resamples, seed=seed)


def item_scores(eval_set, records: list[dict]) -> list[float | None]:
    """Each ground-truth item's score under the set's scoring (a saved record may carry none: it is
    read again from its completion); an item without a record scores 0, as in the metric."""
    b, scoring = eval_set.benchmark, eval_set.options.get("scoring", "paper")
    by_id = {str(r.get("id")): r for r in records if isinstance(r, dict)}
    out = []
    for q in eval_set.queries:
        record = by_id.get(str(q.id))
        completion = record.get("completion") if record else None
        out.append(prediction_record(b.name, q.id, completion, q.truth, scoring)["score"]
                   if isinstance(completion, str) else 0.0)
    return out


def add_intervals(eval_set, records: list[dict], report: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """The report with `<metric>_ci_low/_ci_high` beside each metric that has an interval, and how
    they were made in report["intervals"]."""
    b = eval_set.benchmark
    metrics = report["metrics"]
    if b.kind in ("coco", "lvis"):
        for name, interval in detection_intervals(eval_set, records, seed).items():
            if name in b.metrics:
                _put(metrics, name, interval)
        unit, resamples = "image", IMAGE_RESAMPLES
    else:
        unit, resamples = "item", ITEM_RESAMPLES
        headline = b.metrics[0]
        scores = item_scores(eval_set, records)
        if scores and all(isinstance(s, int | float) for s in scores) and \
                math.isclose(100 * sum(scores) / len(scores), metrics.get(headline, math.nan), abs_tol=1e-6):
            low, high = mean_interval(scores, seed=seed)
            _put(metrics, headline, (100 * low, 100 * high))
    report["intervals"] = {"method": "percentile bootstrap", "confidence": CONFIDENCE, "unit": unit,
                           "resamples": resamples, "seed": seed}
    return report


def k_sample_metrics(eval_set, samples: list[list[str]], k: int, seed: int = 0) -> dict[str, float]:
    """pass@k, maj@k and mean@k (×100) over k completions per query, each with its interval over
    items. A sample is correct when it earns the item's full score (1.0)."""
    b = eval_set.benchmark
    scoring = eval_set.options.get("scoring", "paper")
    per_item: dict[str, list[float]] = {f"pass@{k}": [], f"maj@{k}": [], f"mean@{k}": []}
    for query, completions in zip(eval_set.queries, samples, strict=True):
        scored = [prediction_record(b.name, query.id, c, query.truth, scoring) for c in completions[:k]]
        scores = [float(r["score"] or 0.0) for r in scored]
        correct = [s >= 1.0 for s in scores]
        answers = [r["answer"] if isinstance(r["answer"], str | int | float) else None for r in scored]
        per_item[f"pass@{k}"].append(pass_at_k(len(correct), sum(correct), k))
        per_item[f"maj@{k}"].append(maj_at_k([a.strip() if isinstance(a, str) else a for a in answers], correct, k))
        per_item[f"mean@{k}"].append(mean_at_k(scores, k))
    out: dict[str, float] = {}
    for name, values in per_item.items():
        out[name] = 100 * sum(values) / len(values)
        low, high = mean_interval(values, seed=seed)
        _put(out, name, (100 * low, 100 * high))
    return out
