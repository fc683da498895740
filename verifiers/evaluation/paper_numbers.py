"""The papers' reported numbers (Qwen2-VL 2B/7B), copied from docs/sources.md V7 and R8, so an evaluation
can print its result beside the paper's row.

``PAPER[benchmark][size][setting][metric]``; ``GROUP_PAPER[group][size][setting]`` holds the
averages the tables print over several benchmarks (they belong to no single one). Values are as
printed (percent). Two printed averages are not the mean of their row; both are kept as printed
except one corrected typo, each noted below.
"""

from __future__ import annotations


def _rows(metrics: tuple[str, ...], table: dict[str, dict[str, tuple[float, ...]]]) -> dict:
    """``{size: {setting: (v, ...)}}`` → ``{size: {setting: {metric: v}}}``."""
    return {size: {s: dict(zip(metrics, v, strict=True)) for s, v in rows.items()} for size, rows in table.items()}


def _one(metric: str, table: dict[str, dict[str, float]]) -> dict:
    return {size: {s: {metric: v} for s, v in rows.items()} for size, rows in table.items()}


_SHOTS = ("baseline", "1-shot SFT", "1-shot RFT", "2-shot RFT", "4-shot RFT")
_RRFT = ("zero-shot", "ANS-SFT", "CoT-SFT", "RFT-Zero", "Reason-RFT")


def _cls(values: tuple[float, ...]) -> dict:
    return _one("accuracy", {"2B": dict(zip(_SHOTS, values, strict=True))})


def _rrft(metric: str, b2: tuple[float, ...], b7: tuple[float, ...]) -> dict:
    return _one(metric, {"2B": dict(zip(_RRFT, b2, strict=True)), "7B": dict(zip(_RRFT, b7, strict=True))})


PAPER: dict[str, dict] = {
    # Visual-RFT Tab. 3: COCO, 8 classes.
    "coco_fewshot_8": _one("mAP", {
        "2B": {"baseline": 19.6, "1-shot SFT": 19.5, "1-shot RFT": 33.6, "2-shot SFT": 21.0,
               "2-shot RFT": 41.5, "4-shot SFT": 25.2, "4-shot RFT": 40.6, "8-shot SFT": 30.2,
               "8-shot RFT": 47.4, "16-shot SFT": 31.3, "16-shot RFT": 46.8},
        "7B": {"baseline": 43.0, "4-shot SFT": 44.1, "4-shot RFT": 54.3},
    }),
    # Tab. 7: open-vocabulary COCO, trained on the 65 base classes.
    "coco_ov": _rows(("mAP_n", "mAP_b", "mAP_all"), {
        "2B": {"baseline": (9.8, 6.0, 6.7), "SFT": (13.6, 7.8, 8.9), "RFT": (31.3, 20.6, 22.6)},
        "7B": {"baseline": (26.3, 17.5, 19.2), "SFT": (25.7, 17.5, 19.0), "RFT": (35.8, 25.4, 27.4)},
    }),
    # Tab. 4: LVIS, 6 rare classes, about 10-shot.
    "lvis_fewshot": _one("mAP", {"2B": {"baseline": 4.0, "SFT": 10.0, "RFT": 19.4},
                                 "7B": {"baseline": 15.4, "SFT": 27.6, "RFT": 33.8}}),
    # Tab. 8: LVIS, 13 rare classes (GroundingDINO-B: 23.9).
    "lvis_ov": _one("mAP", {"2B": {"baseline": 2.7, "SFT": 7.6, "RFT": 20.7},
                            "7B": {"baseline": 15.7, "SFT": 24.0, "RFT": 30.4}}),
    # Tab. 2: fine-grained classification, 2B only (per-dataset columns exist for these rows only).
    "flower102": _cls((54.8, 56.6, 70.8, 75.8, 71.4)),
    "pets37": _cls((66.4, 54.7, 84.1, 87.5, 86.1)),
    "aircraft": _cls((45.9, 65.3, 72.5, 75.3, 74.8)),
    "cars196": _cls((56.8, 30.0, 93.8, 95.4, 95.3)),
    # Tab. 6: LISA, 239 training images, 500 steps (GroundedSAM: 26.2 / 28.6 / 21.3).
    "lisa_test": _rows(("mIoU", "gIoU"), {
        "2B": {"baseline": (26.9, 25.3), "SFT": (28.3, 25.3), "RFT": (37.6, 34.4)},
        "7B": {"baseline": (40.4, 38.0), "SFT": (39.1, 37.2), "RFT": (43.9, 43.7)},
    }),
    "lisa_val": _one("mIoU", {"2B": {"baseline": 30.1, "SFT": 29.7, "RFT": 34.4},
                              "7B": {"baseline": 45.2, "SFT": 43.9, "RFT": 47.1}}),
    # Reason-RFT, the table at commit e9bb5e5^ (the one matching the released benchmarks).
    "clevr_math": _rrft("accuracy", (82.40, 96.20, 85.50, 98.40, 96.80), (98.60, 95.00, 87.30, 99.40, 95.60)),
    "super_clevr": _rrft("accuracy", (32.00, 39.20, 46.50, 44.80, 51.20), (42.10, 33.90, 42.40, 53.00, 51.00)),
    "geomath": _rrft("accuracy", (25.86, 51.34, 43.05, 47.68, 49.03), (43.30, 51.34, 50.49, 55.00, 59.27)),
    "geometry3k": _rrft("accuracy", (20.63, 22.50, 25.25, 32.50, 33.13), (43.88, 25.38, 33.00, 54.75, 49.25)),
    "trance": _rrft("score", (3.78, 77.39, 64.37, 42.13, 74.61), (13.53, 82.19, 81.31, 67.67, 79.97)),
    "trance_left": _rrft("score", (4.60, 49.24, 43.19, 34.07, 64.05), (12.72, 54.29, 47.90, 57.20, 59.36)),
    "trance_right": _rrft("score", (4.67, 50.33, 42.86, 33.41, 64.08), (12.78, 54.83, 47.80, 56.15, 58.61)),
}

GROUP_PAPER: dict[str, dict] = {
    # Tab. 2 "Average" over the four classification datasets.
    "fgvc": {"2B": {"baseline": 56.0, "1-shot SFT": 51.7, "1-shot RFT": 80.3, "2-shot SFT": 58.8,
                    "2-shot RFT": 83.5, "4-shot SFT": 55.6, "4-shot RFT": 81.9, "8-shot SFT": 60.3,
                    "8-shot RFT": 85.1, "16-shot SFT": 64.0, "16-shot RFT": 85.3}},
    "counting": {"2B": dict(zip(_RRFT, (57.20, 67.70, 66.00, 71.60, 74.00), strict=True)),
                 "7B": dict(zip(_RRFT, (70.35, 64.45, 64.85, 76.20, 73.30), strict=True))},
    "structure": {"2B": dict(zip(_RRFT, (23.25, 36.92, 34.15, 40.09, 41.08), strict=True)),
                  "7B": dict(zip(_RRFT, (43.59, 38.36, 41.75, 54.88, 54.26), strict=True))},
    # 2B RFT-Zero prints 33.74 although its three columns average 36.54; 7B RFT-Zero is the
    # mean of its columns, a typo corrected (the table prints 56.68, the columns average 60.34).
    "spatial": {"2B": dict(zip(_RRFT, (4.35, 58.99, 50.14, 33.74, 67.58), strict=True)),
                "7B": dict(zip(_RRFT, (13.01, 63.77, 59.00, 60.34, 65.98), strict=True))},
}
