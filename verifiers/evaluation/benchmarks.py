"""The papers' evaluation benchmarks by name: protocol, metric, paper numbers, and rescoring of saved
predictions without a model (the ``vrft eval --predictions predictions.jsonl`` path).

A prediction record is one line of ``predictions.jsonl``: ``{"id", "completion", "answer", "score"}``
(the parsed answer and per-item score are written for reading; rescoring recomputes both from the
completion, so a metric option can change without rerunning inference). Ids are matched as strings.
A detection record's id is ``"<image_id>:<category>"`` (``detection.query_id``), one per query.

Ground truth by benchmark kind:

- ``coco`` / ``lvis``: a COCO / LVIS ground-truth dict (absolute xywh boxes, images with width and
  height; LVIS images with ``neg_category_ids`` / ``not_exhaustive_category_ids``), a path to its
  JSON, or a ``pycocotools`` COCO; options ``protocol`` and ``existence_map`` (see
  ``vrft.verifiers.evaluation.detection``). Every image of the ground truth is evaluated.
- ``classification``: ``{id: class name}``. ``lisa``: ``{id: {"box": [x1, y1, x2, y2] in pixels,
  "width", "height", optional "mask"}}``; records may carry a ``mask`` (RLE or array).
- ``answer`` (counting, structure) and ``trance``: ``{id: answer string}``.

An item without a record scores 0 (a detection query without one has no detections), as a failed
generation does in the papers' scripts; ``counts["missing"]`` says how many. Metrics are ×100, on the
papers' scale.

Scoring (option ``scoring``, every kind): ``"paper"`` (the default) reads each answer as the paper's
released evaluation script does (``vrft.verifiers.evaluation.script_readings``: detection post-processing, the
notebook's NaN-propagating class mean, Reason-RFT's answer reading, TRANCE in the script's set
order); ``"strict"`` reads it with vrft's own parsers (the training rewards'). The report says which
ran (``scoring``, ``scoring_source``) and lists what the reader should know (``warnings``).
docs/evaluation.md lists each difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vrft.verifiers.evaluation import classes as C
from vrft.verifiers.evaluation import detection as det
from vrft.verifiers.evaluation import item_scores as tasks
from vrft.verifiers.evaluation.paper_numbers import GROUP_PAPER, PAPER  # noqa: F401 (GROUP_PAPER: the groups' numbers)
from vrft.verifiers.registry import one_line

# The R1 system prompt Visual-RFT's LISA evaluation adds (Qwen2_VL_lisa_infere.py).
R1_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think><answer> answer here </answer>"
)
REQUIRED_FIELDS = ("id", "completion")
SCORINGS = ("paper", "strict")
# The released script each kind's paper scoring follows (docs/sources.md).
SCORING_SOURCES = {
    "coco": "Visual-RFT coco_evaluation/Qwen2_VL_coco_infere.py + coco_evaluation.py + evaluation.ipynb",
    "lvis": "Visual-RFT lvis_evaluation/Qwen2_VL_lvis_infere.py (the COCO notebook's mean assumed)",
    "classification": "Visual-RFT classification/Qwen2_VL_classification_infere.py",
    "lisa": "Visual-RFT lisa_evaluation/Qwen2_VL_lisa_infere.py + merge_eval.py (rows as vrft prepares them)",
    "answer": "Reason-RFT eval/cal_score_benchmarks_for_open_source.py",
    "trance": "Reason-RFT eval/cal_score_benchmarks_for_open_source.py",
}


@dataclass(frozen=True)
class Sampling:
    """Decoding of an evaluation run; temperature 0 means greedy (top_p / top_k then unused)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 1024

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


# Visual-RFT's scripts call model.generate with only max_new_tokens: Qwen2-VL-Instruct's generation
# config is greedy in effect. Reason-RFT's eval_by_vllm: temperature 0.1, top_p 0.9, top_k 50, 768.
VISUAL_RFT = Sampling(max_new_tokens=1024)
VISUAL_RFT_LISA = Sampling(max_new_tokens=128)
REASON_RFT = Sampling(temperature=0.1, top_p=0.9, top_k=50, max_new_tokens=768)
REASON_RFT_MAX_PIXELS = 480_000


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: what ``vrft eval`` needs to run it as its paper did, and how it is scored."""

    name: str
    kind: str  # coco | lvis | classification | lisa | answer | trance
    metrics: tuple[str, ...]  # the metric names it reports (the paper's columns)
    sampling: Sampling
    r1_system_prompt: bool  # whether the paper's evaluation adds R1_SYSTEM_PROMPT
    source: str  # paper, table and split as the paper names it
    split: str = ""  # id / ood (Reason-RFT), test / val (LISA)
    subsets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # detection: metric → classes
    max_pixels: int | None = None  # None: the processor's default (Visual-RFT's scripts set none)
    data: str = ""  # what the user points --data / --annotations at (the paper's test data)
    # The prompt: a template name of vrft.orchestrator.core.templates rendered per row (None: the rows'
    # own `problem`), and whether its text is the paper's own evaluation prompt word for word.
    template: str | None = None
    template_verbatim: bool = True
    template_note: str = ""  # why a template is not verbatim, for the report

    @property
    def scoring_source(self) -> str:
        """The released script the paper scoring follows (docs/sources.md)."""
        return SCORING_SOURCES[self.kind]

    @property
    def classes(self) -> tuple[str, ...]:
        """Detection: the classes queried (the union of the subsets)."""
        return tuple(dict.fromkeys(c for names in self.subsets.values() for c in names))

    @property
    def paper(self) -> dict:
        """``{size: {setting: {metric: value}}}`` as the paper prints it ({} when it prints none)."""
        return PAPER.get(self.name, {})

    @property
    def metric(self) -> Callable[..., dict[str, Any]]:
        """The scorer: ``fn(benchmark, records, ground_truth, **options) -> report``."""
        return _SCORERS[self.kind]


# Each kind's data, and its prompt where the kind fixes one (Reason-RFT's per benchmark, below).
_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "coco": {"data": "COCO val2017 instances json + images (--annotations, --images)",
             "template": "visual_rft/detection"},
    "lvis": {"data": "lvis_v1_val json + COCO images (--annotations, --images)", "template": "visual_rft/detection"},
    "classification": {"data": "the test split's rows, each with its own problem text and label (--data)",
                       "template_note": "the rows' own prompt"},
    "lisa": {"data": "LISA ReasonSeg rows built by `vrft prepare-data lisa` (--data)", "template_verbatim": False,
             "template_note": "the rows' prompt is Visual-RFT's training prompt; the released inference script's "
                              "own text is not reproduced (supply it with --template-file, {instruction})"},
    "answer": {"data": "Reason-RFT's released test json (--data)"},
    "trance": {"data": "Reason-RFT's released TRANCE test json (--data)", "template": "reason_rft/spatial",
               "template_verbatim": False,
               "template_note": "vrft's own wording of Reason-RFT's TRANCE prompt (the released text is not "
                                "reproduced; supply it with --template-file)"},
}


def _bench(name: str, kind: str, metrics: tuple[str, ...], source: str, **kw: Any) -> Benchmark:
    defaults: dict[str, Any] = {"sampling": VISUAL_RFT, "r1_system_prompt": False, **_KIND_DEFAULTS[kind]}
    if kind in ("answer", "trance"):
        defaults.update(sampling=REASON_RFT, max_pixels=REASON_RFT_MAX_PIXELS)
    return Benchmark(name, kind, metrics, source=source, **{**defaults, **kw})


_V, _R = "Visual-RFT", "Reason-RFT"
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    _bench("coco_fewshot_8", "coco", ("mAP",), f"{_V} Tab. 3, COCO val2017, 8 classes",
           subsets={"mAP": C.COCO_FEWSHOT_8}),
    _bench("coco_ov", "coco", ("mAP_n", "mAP_b", "mAP_all"), f"{_V} Tab. 7, COCO val2017, 15 novel / 65 base",
           subsets={"mAP_n": C.COCO_OV_NOVEL_15, "mAP_b": C.COCO_OV_BASE_65, "mAP_all": C.COCO_NAMES}),
    _bench("lvis_fewshot", "lvis", ("mAP",), f"{_V} Tab. 4, lvis_v1_val, 6 rare classes",
           subsets={"mAP": C.LVIS_FEWSHOT_6}),
    _bench("lvis_ov", "lvis", ("mAP",), f"{_V} Tab. 8, lvis_v1_val, 13 rare classes",
           subsets={"mAP": C.LVIS_OV_RARE_13}),
    *(_bench(n, "classification", ("accuracy", "accuracy_exact"), f"{_V} Tab. 2, {p} test split (N={k})")
      for n, p, k in (("flower102", "Flower102", 2463), ("pets37", "Pets37", 3669),
                      ("cars196", "Cars196", 8041), ("aircraft", "FGVC-Aircraft", 3333))),
    *(_bench(f"lisa_{s}", "lisa", ("mIoU", "gIoU", "cIoU"), f"{_V} Tab. 6, LISA ReasonSeg {s}", split=s,
             sampling=VISUAL_RFT_LISA, r1_system_prompt=True) for s in ("test", "val")),
    _bench("clevr_math", "answer", ("accuracy",), f"{_R} Counting ID, clevr-math (CLEVR-Math 1k)", split="id",
           template="reason_rft/counting"),
    _bench("super_clevr", "answer", ("accuracy",), f"{_R} Counting OOD, super-clevr (Super-CLEVR 1k)",
           split="ood", template="reason_rft/counting"),
    _bench("geomath", "answer", ("accuracy",), f"{_R} Structure ID, geomath (GeoMath 820)", split="id",
           template="reason_rft/structure"),
    _bench("geometry3k", "answer", ("accuracy",), f"{_R} Structure OOD, geometry3k (Geometry3K 800)",
           split="ood", template="reason_rft/structure"),
    _bench("trance", "trance", ("score",), f"{_R} Spatial ID, trance (TRANCE 1k)", split="id"),
    _bench("trance_left", "trance", ("score",), f"{_R} Spatial OOD, trance-left (left view 1k)", split="ood"),
    _bench("trance_right", "trance", ("score",), f"{_R} Spatial OOD, trance-right (right view 1k)",
           split="ood"),
)}
ALIASES = {"lisa": "lisa_test"}
# Averages the tables print over several benchmarks: group → (members, metric).
GROUPS: dict[str, tuple[tuple[str, ...], str]] = {
    "fgvc": (("flower102", "pets37", "aircraft", "cars196"), "accuracy"),
    "counting": (("clevr_math", "super_clevr"), "accuracy"),
    "structure": (("geomath", "geometry3k"), "accuracy"),
    "spatial": (("trance", "trance_left", "trance_right"), "score"),
}


def list_benchmarks() -> list[str]:
    return sorted(BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (or an alias); an unknown name is a one-line ValueError."""
    b = BENCHMARKS.get(ALIASES.get(name, name))
    if b is None:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(list_benchmarks())}")
    return b


def rescore(benchmark: str, predictions: Sequence[Mapping[str, Any]], ground_truth: Any,
            **options: Any) -> dict[str, float]:
    """The benchmark's metrics (×100) recomputed from prediction records; see ``score_report``."""
    return score_report(benchmark, predictions, ground_truth, **options)["metrics"]


def score_report(benchmark: str, predictions: Sequence[Mapping[str, Any]], ground_truth: Any,
                 **options: Any) -> dict[str, Any]:
    """``{"benchmark", "protocol", "scoring", "scoring_source", "metrics", "counts", "warnings", "paper",
    ...}``: the metrics (×100), the query protocol used (detection; ``"paper"`` elsewhere), how answers
    were read (option ``scoring``: see the module's docstring), item counts, one-line warnings, the
    paper's numbers and per-kind detail (``per_class`` AP for detection, ``by_type`` accuracy for
    answers, ``score_bounds`` for TRANCE under paper scoring).

    Records that do not fit the benchmark (not an object, a missing field, a non-string completion,
    an unknown or repeated id) raise a one-line ValueError naming the first bad record."""
    b = get_benchmark(benchmark)
    report = b.metric(b, list(predictions), ground_truth, **options)
    return {"benchmark": b.name, **report, "scoring_source": b.scoring_source if report["scoring"] == "paper"
            else "vrft's own readings (the training rewards' parsers)", "warnings": report.get("warnings", []),
            "paper": b.paper}


def benchmark_queries(benchmark: str, ground_truth: Any, *, protocol: str | None = None,
                      existence_map: Mapping[Any, Sequence[str]] | None = None) -> dict[str, tuple[int, str]]:
    """Detection: ``{query id: (image_id, category)}`` to prompt, under the protocol (the default is
    ``existence_map`` when a map is given, else ``gt_categories``)."""
    b = get_benchmark(benchmark)
    if b.kind not in ("coco", "lvis"):
        raise ValueError(f"{b.name} is not a detection benchmark; its queries are its ground-truth items")
    protocol = protocol or ("existence_map" if existence_map is not None else "gt_categories")
    return det.detection_queries(det.load_ground_truth(ground_truth), b.classes, protocol,
                                 _load_json(existence_map))


def prediction_record(benchmark: str, item_id: Any, completion: str, ground_truth_item: Any = None,
                      scoring: str = "paper") -> dict:
    """The ``predictions.jsonl`` line for one item: ``{"id", "completion", "answer", "score"}``.

    ``answer`` is what the metric reads from the completion under ``scoring`` (detection:
    ``[{"box", "score"}]`` or None when unparseable; LISA: the first box; otherwise the answer text).
    ``score`` is the per-item score (fraction) given the item's ground truth in the form ``rescore``
    takes; None for detection, whose metric exists only over the whole set, or without ground truth."""
    b = get_benchmark(benchmark)
    _check_scoring(scoring)
    score: float | None = None
    if b.kind in ("coco", "lvis"):
        found = det.read_detections(completion, scoring)
        answer: Any = None if found is None else [{"box": [x1, y1, x2, y2], "score": c}
                                                  for c, x1, y1, x2, y2 in found]
    elif b.kind == "classification":
        answer = tasks.extract_answer(completion, dotall=False)
        if ground_truth_item is not None:
            score = float(tasks.classification_correct(completion, ground_truth_item))
    elif b.kind == "lisa":
        answer = tasks.lisa_box(completion)
        if ground_truth_item is not None:
            g = ground_truth_item
            score = tasks.lisa_box_iou(completion, g["box"], g["width"], g["height"])
    else:
        answer = tasks.answer_text(completion, dotall=b.kind == "answer")
        if ground_truth_item is not None:
            score = _answer_scorer(b, scoring)(completion, ground_truth_item)
    return {"id": item_id, "completion": completion, "answer": answer, "score": score}


def _check_scoring(scoring: str) -> None:
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; choose {' or '.join(SCORINGS)}")


def _answer_scorer(b: Benchmark, scoring: str) -> Callable[[str, str], float]:
    """One completion's score against its answer for a Reason-RFT benchmark, under `scoring`."""
    if scoring == "strict":
        return tasks.trance_eval_score if b.kind == "trance" else tasks.answer_score
    from vrft.verifiers.evaluation import script_readings
    from vrft.verifiers.math_reward import paper_verify

    if b.kind == "trance":
        return script_readings.trance_score_script
    return lambda completion, answer: script_readings.answer_score_script(
        completion, answer, lambda gold, target: paper_verify(gold, target, tail=None))


def _load_json(obj: Any) -> Any:
    if isinstance(obj, str) or hasattr(obj, "__fspath__"):
        import json

        with open(obj, encoding="utf-8") as f:
            return json.load(f)
    return obj


def _index(b: Benchmark, records: Iterable[Any], expected: Mapping[str, Any] | set[str],
           what: str) -> dict[str, Mapping[str, Any]]:
    """``{str(id): record}``, checking every record against the benchmark's items."""
    out: dict[str, Mapping[str, Any]] = {}
    for i, r in enumerate(records):
        where = f"{b.name}: prediction record {i}"
        if not isinstance(r, Mapping):
            raise ValueError(f"{where} is a {type(r).__name__}, not an object with {', '.join(REQUIRED_FIELDS)}")
        for f in REQUIRED_FIELDS:
            if f not in r:
                raise ValueError(one_line(f"{where} (id {r.get('id')!r}) has no {f!r} field"))
        if not isinstance(r["completion"], str):
            raise ValueError(one_line(f"{where} (id {r['id']!r}): completion is not a string"))
        key = str(r["id"])
        if key not in expected:
            raise ValueError(one_line(f"{where}: id {r['id']!r} is not {what}"))
        if key in out:
            raise ValueError(one_line(f"{where}: id {r['id']!r} appears twice"))
        out[key] = r
    return out


def _check_options(b: Benchmark, options: Mapping[str, Any], allowed: tuple[str, ...] = ()) -> None:
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ValueError(f"{b.name} takes no option {bad[0]!r}" + (f" (options: {', '.join(allowed)})"
                                                                   if allowed else ""))


def _gt_items(b: Benchmark, ground_truth: Any) -> dict[str, Any]:
    if not isinstance(ground_truth, Mapping):
        raise ValueError(f"{b.name} ground truth must be a mapping {{id: ...}}, got {type(ground_truth).__name__}")
    return {str(k): v for k, v in ground_truth.items()}


def _counts(n_items: int, n_records: int) -> dict[str, int]:
    return {"items": n_items, "predictions": n_records, "missing": n_items - n_records}


def _pct(x: float) -> float:
    return 100.0 * x


# ---- scorers ---------------------------------------------------------------------------------------


def _score_detection(b: Benchmark, records: list, ground_truth: Any, **options: Any) -> dict[str, Any]:
    _check_options(b, options, ("protocol", "existence_map", "scoring"))
    scoring = options.get("scoring", "paper")
    _check_scoring(scoring)
    existence_map = _load_json(options.get("existence_map"))
    protocol = options.get("protocol")
    protocol = protocol or ("existence_map" if existence_map is not None else "gt_categories")
    gt = det.load_ground_truth(ground_truth)
    queries = det.detection_queries(gt, b.classes, protocol, existence_map)
    by_id = _index(b, records, queries, f"a query of {b.name} under the {protocol} protocol")
    ids = det.category_ids(gt, b.classes)
    dets: list[dict[str, Any]] = []
    losses = {"answers_unparsed": 0, "answers_lost_whole": 0, "answers_cut": 0, "items_lost_after_error": 0,
              "unscorable_scores": 0}
    for key, r in by_id.items():
        img, name = queries[key]
        dets += det.detections_from_completion(r["completion"], img, ids[name], scoring=scoring, losses=losses)
    res = det.subset_map(gt, dets, b.subsets, federated=b.kind == "lvis",
                         nan="propagate" if scoring == "paper" else "skip")
    warnings = []
    if losses["unscorable_scores"]:
        warnings.append(f"{losses['unscorable_scores']} detections have a non-numeric Confidence: the released "
                        "evaluation crashes on them; dropped")
    if not dets:
        warnings.append("no detections: the released notebook cannot score an empty result (it crashes); "
                        "reported as 0")
    for metric, value in res["metrics"].items():
        if math.isnan(value):
            missing = [c for c in b.subsets[metric] if math.isnan(res["per_class"][c])]
            strict = det.subset_map(gt, dets, {metric: b.subsets[metric]}, federated=b.kind == "lvis")
            warnings.append(f"{metric} is NaN as the notebook computes it (the sum of {len(b.subsets[metric])} "
                            f"class APs over {len(b.subsets[metric])}): no ground truth for "
                            f"{', '.join(missing)} among the evaluated images; --scoring strict averages the "
                            f"others: {_pct(strict['metrics'][metric]):.2f}")
    counts = {**_counts(len(queries), len(by_id)), "detections": len(dets)}
    if scoring == "paper":
        counts.update(losses)
    return {"protocol": protocol, "scoring": scoring, "warnings": warnings,
            "metrics": {k: _pct(v) for k, v in res["metrics"].items()},
            "per_class": {k: _pct(v) for k, v in res["per_class"].items()}, "counts": counts}


def _score_classification(b: Benchmark, records: list, ground_truth: Any, **options: Any) -> dict[str, Any]:
    # The script's reading is vrft's `visual_rft` mode under both scorings ("accuracy"); the exact
    # match beside it is vrft's stricter one.
    _check_options(b, options, ("scoring",))
    _check_scoring(options.get("scoring", "paper"))
    labels = _gt_items(b, ground_truth)
    by_id = _index(b, records, labels, f"an item of the {b.name} ground truth")
    n = max(len(labels), 1)
    acc = {mode: sum(tasks.classification_correct(by_id[k]["completion"], lab, mode=mode)
                     for k, lab in labels.items() if k in by_id) / n for mode in ("visual_rft", "exact")}
    return {"protocol": "paper", "scoring": options.get("scoring", "paper"),
            "metrics": {"accuracy": _pct(acc["visual_rft"]),
                                             "accuracy_exact": _pct(acc["exact"])},
            "counts": _counts(len(labels), len(by_id))}


def _score_lisa(b: Benchmark, records: list, ground_truth: Any, **options: Any) -> dict[str, Any]:
    # Per-item IoU as the script computes it under both scorings; which rows and boxes are scored is
    # the ground truth's (docs/evaluation.md, "LISA").
    _check_options(b, options, ("scoring",))
    _check_scoring(options.get("scoring", "paper"))
    items = _gt_items(b, ground_truth)
    for k, g in items.items():
        if not isinstance(g, Mapping) or not all(f in g for f in ("box", "width", "height")):
            raise ValueError(f"{b.name} ground truth item {k!r} needs box (pixels), width and height")
    by_id = _index(b, records, items, f"an item of the {b.name} ground truth")
    ious = [tasks.lisa_box_iou(by_id[k]["completion"], g["box"], g["width"], g["height"]) if k in by_id else 0.0
            for k, g in items.items()]
    metrics = {"mIoU": _pct(sum(ious) / len(ious)) if ious else 0.0}
    with_mask = [k for k, g in items.items() if g.get("mask") is not None]
    predicted_masks = any("mask" in r for r in by_id.values())  # SAM ran (--sam): gIoU / cIoU
    if predicted_masks and len(with_mask) != len(items):
        raise ValueError(f"{b.name} ground truth item {sorted(set(items) - set(with_mask))[0]!r} has no mask "
                         "(gIoU/cIoU need a mask for every item)")
    if with_mask and predicted_masks:
        preds = [by_id[k].get("mask") if k in by_id else None for k in items]
        masks = tasks.mask_metrics(preds, [g["mask"] for g in items.values()])
        metrics.update({k: _pct(v) for k, v in masks.items()})
    return {"protocol": "paper", "scoring": options.get("scoring", "paper"), "metrics": metrics,
            "counts": _counts(len(items), len(by_id))}


def _score_answers(b: Benchmark, records: list, ground_truth: Any, **options: Any) -> dict[str, Any]:
    _check_options(b, options, ("scoring",))
    scoring = options.get("scoring", "paper")
    _check_scoring(scoring)
    answers = _gt_items(b, ground_truth)
    by_id = _index(b, records, answers, f"an item of the {b.name} ground truth")
    fn = _answer_scorer(b, scoring)
    scores = {k: fn(by_id[k]["completion"], a) if k in by_id else 0.0 for k, a in answers.items()}
    mean = sum(scores.values()) / len(scores) if scores else 0.0
    out: dict[str, Any] = {"protocol": "paper", "scoring": scoring, "warnings": [],
                           "metrics": {b.metrics[0]: _pct(mean)}, "counts": _counts(len(answers), len(by_id))}
    if b.kind == "answer":  # cal_score_benchmarks prints choice / non-choice items apart
        by_type: dict[str, list[float]] = {}
        for k, a in answers.items():
            by_type.setdefault("choice" if tasks.is_choice(a) else "non_choice", []).append(scores[k])
        out["by_type"] = {t: _pct(sum(v) / len(v)) for t, v in by_type.items()}
        if scoring == "paper":
            import importlib.metadata

            out["math_verify"] = importlib.metadata.version("math-verify")  # Reason-RFT pins 0.3.3
    elif scoring == "paper":
        order = _trance_order(b, by_id, answers, mean)
        out["counts"].update(order.pop("counts"))
        out.update(order)
    return out


def _trance_order(b: Benchmark, by_id: Mapping[str, Any], answers: Mapping[str, str], mean: float) -> dict:
    """What another string hash seed could have scored: the released script iterates a `set` of each
    side's items, so an answer with tied greedy choices scores by this process's hash seed."""
    import os
    import platform

    from vrft.verifiers.evaluation.script_readings import trance_order_bounds

    lows, highs, dependent, unbounded = [], [], 0, 0
    for k, a in answers.items():
        bounds = trance_order_bounds(by_id[k]["completion"], a) if k in by_id else (0.0, 0.0)
        if bounds is None:
            unbounded += 1
            bounds = (0.0, 1.0)
        lows.append(bounds[0])
        highs.append(bounds[1])
        dependent += bounds[0] != bounds[1]
    n = max(len(answers), 1)
    lo, hi = _pct(sum(lows) / n), _pct(sum(highs) / n)
    seed = os.environ.get("PYTHONHASHSEED", "random")
    out = {"trance_order": "set", "python_hash_seed": seed, "python": platform.python_version(),
           "score_bounds": [lo, hi], "warnings": []}
    out_counts = {"order_dependent": dependent, "order_unbounded": unbounded}
    if dependent or unbounded:
        out["warnings"].append(
            f"{b.name}: {dependent} of {len(answers)} items score differently under another PYTHONHASHSEED (the "
            f"released script iterates a set); this run {_pct(mean):.2f}, possible {lo:.2f}-{hi:.2f}"
            + (f" ({unbounded} items too long to bound)" if unbounded else "")
            + ("; set PYTHONHASHSEED to repeat it" if seed == "random" else ""))
    out["counts"] = out_counts
    return out


_SCORERS: dict[str, Callable[..., dict[str, Any]]] = {
    "coco": _score_detection, "lvis": _score_detection, "classification": _score_classification,
    "lisa": _score_lisa, "answer": _score_answers, "trance": _score_answers,
}
