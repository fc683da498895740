"""`vrft prepare-data`: build what the papers trained on but did not release, from data the user has.

Each mode writes a `save_to_disk` `DatasetDict({"train": ...})` in Visual-RFT's released schema
(`image`, `problem`, `solution`) and returns `(path, summary)`; `describe(path, summary)` is the line
the command prints.

- `k_shot`: a seeded k-per-class subset (Visual-RFT released only 4-shot sets; 1/2/8/16 are the
  user's to build). Classes come from a column, or from the classification answer, or from the
  category named in the detection prompt.
- `coco_to_detection`: a COCO instances json + image folder → one detection row per image and
  category present, boxes in the 0–1000 frame, the verbatim detection prompt and the single-quoted
  solution string; optionally `No Objects` rows for absent categories.
- `lisa_to_grounding`: LISA ReasonSeg LabelMe-style jsons → one grounding row per image as Visual-RFT's
  gen_box_ann.py builds it (the first instruction, `shapes[0]`'s float pixel box and its mask), with
  vrft's own reading beside it in `solution` (docs/evaluation.md, "LISA").

- `verl_to_rows`: verl-style parquet rows (DeepEyes' released training files, arXiv 2505.14362: a
  chat `prompt`, `images`, `reward_model.ground_truth`, `extra_info.question`, `env_name`) → one
  row per question with its first image, the question followed by vrft's own tool-use instruction,
  and the answer as `solution` and `ground_truth` (docs/tools.md, "A DeepEyes-style recipe").

Solutions use LISA's conversion, `int(coord / W * 1000)` (truncation), for both box modes. COCO: crowd
annotations, boxes that collapse to zero area in the 0–1000 frame (they could never be matched) and
repeated boxes are left out and counted in the summary.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
from PIL import Image

from vrft.orchestrator.core.ground_truth import GroundTruthError
from vrft.orchestrator.core.tasks import Task, find_task, k_shot_tasks, parse_ground_truth
from vrft.orchestrator.core.templates import render_prompt
from vrft.orchestrator.data.sources import decode_image, load_rows

VIRFT_FEATURES = datasets.Features(
    {"image": datasets.Image(), "problem": datasets.Value("string"), "solution": datasets.Value("string")}
)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _save(rows: list[dict] | datasets.Dataset, out: str | Path, what: str) -> Path:
    if len(rows) == 0:
        raise ValueError(f"{what} produced no rows; nothing written to {out}")
    if isinstance(rows, datasets.Dataset):
        dataset = rows
    else:
        dataset = datasets.Dataset.from_list(rows, features=VIRFT_FEATURES)
    out = Path(out)
    datasets.disable_progress_bars()
    datasets.DatasetDict({"train": dataset}).save_to_disk(str(out))
    return out


def _redecoded(dataset: datasets.Dataset) -> datasets.Dataset:
    """Image columns back to decode=True (load_rows hands them out undecoded), so the saved subset
    has the released features."""
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image) and not feature.decode:
            dataset = dataset.cast_column(name, datasets.Image())
    return dataset


def _row_class(row: dict, index: int, task: Task, class_column: str | None) -> str | None:
    """The class of a row; None for a detection negative."""
    if class_column is not None:
        value = row.get(class_column)
        if value is None or not str(value).strip():
            raise ValueError(f"row {index}: column {class_column!r} is empty")
        return str(value).strip()
    try:
        return task.k_shot_class(row, parse_ground_truth(row, task.name))
    except GroundTruthError as e:
        raise ValueError(f"row {index}: {e}") from None


def k_shot(
    source: str | Path,
    out: str | Path,
    k: int,
    seed: int = 0,
    task: str = "classification",
    class_column: str | None = None,
    split: str | None = None,
    negatives: bool = False,
    classes: list[str] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """`k` rows per class of a classification or detection dataset, drawn with `seed`, in source order.

    A class with fewer than `k` rows keeps all of them and is listed under `short_classes`. Detection
    negatives (`No Objects`) are left out unless `negatives`, then drawn as a class of their own.
    `classes` keeps only those classes (Visual-RFT's 8 COCO few-shot classes out of ViRFT_COCO's 80).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer (the papers use 1, 2, 4, 8, 16), got {k!r}")
    record = find_task(task)
    if record is None or record.k_shot_class is None:
        raise ValueError(f"k_shot takes a {' or '.join(k_shot_tasks())} dataset, not {task!r}")
    dataset = load_rows(source, split)
    columns = ("problem", "solution", "answer", "ground_truth", class_column)
    wanted = [c for c in columns if c in dataset.column_names]
    by_class: dict[str, list[int]] = {}
    skipped = 0
    for i, row in enumerate(dataset.select_columns(wanted)):
        label = _row_class(row, i, record, class_column)
        if label is None and not negatives:
            skipped += 1
            continue
        if classes is not None and label is not None and label not in classes:
            continue
        by_class.setdefault("No Objects" if label is None else label, []).append(i)
    if classes is not None and not set(classes) & set(by_class):
        raise ValueError(f"none of the classes {classes} appears in {source}")
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(by_class):
        pool = by_class[label]
        chosen += rng.sample(pool, min(k, len(pool)))
    subset = _redecoded(dataset.select(sorted(chosen)))
    path = _save(subset, out, f"k_shot of {source}")
    short = {c: len(v) for c, v in sorted(by_class.items()) if len(v) < k}
    summary = {"mode": "k_shot", "source": str(source), "rows": len(subset), "k": k, "seed": seed,
               "classes": len(by_class), "short_classes": short, "negatives_skipped": skipped}
    return path, summary


def _rel(v: float, side: float) -> int:
    return min(1000, max(0, int(v / side * 1000)))


def _image_value(path: Path) -> dict:
    return {"bytes": path.read_bytes(), "path": path.name}


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def coco_to_detection(
    annotations: str | Path,
    image_dir: str | Path,
    out: str | Path,
    negatives_per_image: int = 0,
    seed: int = 0,
    categories: list[str] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Visual-RFT detection rows from a COCO instances json (read with pycocotools) and its images."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco = COCO(str(annotations))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    if categories is not None:
        unknown = sorted(set(categories) - set(names.values()))
        if unknown:
            raise ValueError(f"categories {unknown} are not in {annotations}")
        names = {i: n for i, n in names.items() if n in set(categories)}
    rng = random.Random(seed)
    rows: list[dict] = []
    counts = {"images": 0, "positives": 0, "negatives": 0, "crowd_skipped": 0, "degenerate_boxes": 0,
              "duplicate_boxes": 0, "missing_images": 0}
    missing: list[str] = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        file = Path(image_dir) / info["file_name"]
        if not file.is_file():
            counts["missing_images"] += 1
            missing.append(info["file_name"])
            continue
        width, height = info.get("width"), info.get("height")
        if not width or not height:
            width, height = _image_size(file)
        boxes: dict[int, list[list[int]]] = {}
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            if ann["category_id"] not in names:
                continue
            if ann.get("iscrowd", 0):
                counts["crowd_skipped"] += 1
                continue
            x, y, w, h = ann["bbox"]
            box = [_rel(x, width), _rel(y, height), _rel(x + w, width), _rel(y + h, height)]
            if box[2] <= box[0] or box[3] <= box[1]:
                counts["degenerate_boxes"] += 1
            elif box in boxes.setdefault(ann["category_id"], []):
                counts["duplicate_boxes"] += 1
            else:
                boxes[ann["category_id"]].append(box)
        image = _image_value(file)
        counts["images"] += 1
        for cat_id in sorted(c for c in boxes if boxes[c]):
            solution = [{"Position": b, "Confidence": 1} for b in boxes[cat_id]]
            problem = render_prompt("visual_rft/detection", {"category": names[cat_id]})
            rows.append({"image": image, "problem": problem, "solution": f"<answer>{solution!r}</answer>"})
            counts["positives"] += 1
        absent = sorted(c for c in names if not boxes.get(c))
        for cat_id in sorted(rng.sample(absent, min(negatives_per_image, len(absent)))):
            problem = render_prompt("visual_rft/detection", {"category": names[cat_id]})
            rows.append({"image": image, "problem": problem, "solution": "<answer>No Objects</answer>"})
            counts["negatives"] += 1
    path = _save(rows, out, f"coco_to_detection of {annotations}")
    summary = {"mode": "coco", "source": str(annotations), "rows": len(rows), "categories": len(names)}
    summary.update(counts)
    if missing:
        summary["first_missing"] = missing[:5]
    return path, summary


def _find_image(meta: dict, json_file: Path, image_dir: Path) -> Path | None:
    if meta.get("imagePath"):
        candidate = image_dir / Path(str(meta["imagePath"])).name
        if candidate.is_file():
            return candidate
    for suffix in _IMAGE_SUFFIXES:
        candidate = image_dir / (json_file.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


LISA_FEATURES = datasets.Features({
    **VIRFT_FEATURES,
    "lisa_id": datasets.Value("string"),
    "instruction_index": datasets.Value("int32"),
    "instruction": datasets.Value("string"),
    "box_px": datasets.Sequence(datasets.Value("float64"), length=4),
    "width": datasets.Value("int32"),
    "height": datasets.Value("int32"),
    "mask": {"size": datasets.Sequence(datasets.Value("int32"), length=2), "counts": datasets.Value("string")},
    "shape_label": datasets.Value("string"),
    "only_ignore_shapes": datasets.Value("bool"),
})
LISA_UNSCORABLE = "lisa_unscorable.json"


def _points_box(points: list) -> list[float]:
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def lisa_to_grounding(
    source_dir: str | Path, out: str | Path, image_dir: str | Path | None = None, all_instructions: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Grounding rows from LISA ReasonSeg jsons (`text`: the instructions, `shapes[].points`: polygons;
    the image beside the json or in `image_dir`), one per image as Visual-RFT's gen_box_ann.py builds
    its evaluation annotations: the first instruction, and `shapes[0]` whatever its label, its box as
    the float min/max of the polygon in pixels (`box_px`) and its mask (`mask`, COCO RLE, for gIoU /
    cIoU). `all_instructions` adds a row for each further instruction (`instruction_index` > 0).

    `solution` keeps vrft's own reading (the training ground truth and `--scoring strict`): the first
    polygon not labelled `ignore`, `int(coord/W·1000)` in the 0–1000 frame (`shapes[0]`'s when every
    shape is `ignore`, flagged `only_ignore_shapes`). A json that cannot be scored (no polygon, no
    instruction, no image) is listed in `lisa_unscorable.json` beside the rows, with why."""
    from vrft.verifiers.evaluation.item_scores import mask_to_rle, polygon_mask

    source = Path(source_dir)
    files = sorted(source.glob("*.json"))
    if not files:
        raise ValueError(f"no LISA .json annotation files in {source}")
    images = Path(image_dir) if image_dir is not None else source
    rows: list[dict] = []
    unscorable: list[dict] = []
    counts = {"files": len(files), "images": 0, "ignore_first": 0, "only_ignore": 0}
    for file in files:
        try:
            meta = json.loads(file.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{file}: not JSON ({e})") from None
        texts = meta.get("text") or []
        texts = [texts] if isinstance(texts, str) else [t for t in texts if isinstance(t, str) and t.strip()]
        shapes = [s for s in meta.get("shapes") or [] if s.get("points")]
        image_file = _find_image(meta, file, images)
        why = ("no polygon" if not shapes else "no instruction" if not texts
               else "image not found" if image_file is None else None)
        if why is not None:
            unscorable.append({"json": file.name, "reason": why})
            continue
        width, height = meta.get("imageWidth"), meta.get("imageHeight")
        if not width or not height:
            width, height = _image_size(image_file)
        first = shapes[0]
        targets = [s for s in shapes if str(s.get("label", "")).lower() != "ignore"]
        counts["ignore_first"] += str(first.get("label", "")).lower() == "ignore"
        counts["only_ignore"] += not targets
        x1, y1, x2, y2 = _points_box((targets or shapes)[0]["points"])
        solution = (f"<answer>({_rel(x1, width)},{_rel(y1, height)}),"
                    f"({_rel(x2, width)},{_rel(y2, height)})</answer>")
        mask = mask_to_rle(polygon_mask(first["points"], int(height), int(width)))
        image = _image_value(image_file)
        counts["images"] += 1
        for index, text in enumerate(texts if all_instructions else texts[:1]):
            rows.append({"image": image, "problem": render_prompt("visual_rft/lisa", {"instruction": text.strip()}),
                         "solution": solution, "lisa_id": file.stem, "instruction_index": index,
                         "instruction": text.strip(),
                         "box_px": _points_box(first["points"]), "width": int(width), "height": int(height),
                         "mask": mask, "shape_label": str(first.get("label", "")),
                         "only_ignore_shapes": not targets})
    path = _save(datasets.Dataset.from_list(rows, features=LISA_FEATURES), out, f"lisa_to_grounding of {source}")
    (path / LISA_UNSCORABLE).write_text(json.dumps(unscorable, indent=1) + "\n", encoding="utf-8")
    return path, {"mode": "lisa", "source": str(source), "rows": len(rows), **counts, "unscorable": len(unscorable)}


# ---- verl parquet rows (DeepEyes) ------------------------------------------------------------------

VERL_COLUMNS = ("prompt", "images", "reward_model")  # every verl row; extra_info, data_source, env_name if present
# vrft's own words after the question. The data's instruction is left out: DeepEyes' names its own tool
# (image_zoom_in_tool, with a bbox_2d argument), which vrft's `zoom` is not; vrft's prompt announces
# its tools itself (rollout/inputs.py). This asks for the turn format the `format` reward reads on the
# answering turn.
VERL_INSTRUCTION = (
    "First reason inside <think> </think>. If a detail is too small to make out, call the zoom tool on "
    "the region that holds it and look again. When you can answer, give your reasoning in <think> "
    "</think> and then only the final answer, a word, a number or a short phrase, in <answer> </answer>."
)
VERL_FEATURES = datasets.Features({
    **VIRFT_FEATURES,
    "question": datasets.Value("string"),
    "answer": datasets.Value("string"),
    "ground_truth": datasets.Value("string"),
    "data_source": datasets.Value("string"),
    "env_name": datasets.Value("string"),
    "id": datasets.Value("string"),
})
_IMAGE_PLACEHOLDER = "<image>"  # verl marks where the image goes in a message


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _user_text(prompt: Any, where: str) -> str:
    """The text of the first user message of a verl `prompt` (its content a string or a list of parts)."""
    if not isinstance(prompt, list) or not all(isinstance(m, dict) for m in prompt):
        raise ValueError(f"{where}: key 'prompt' must be a list of {{role, content}} messages, got {_kind(prompt)}")
    for message in prompt:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(str(p["text"]) for p in content if isinstance(p, dict) and p.get("text"))
        raise ValueError(f"{where}: key 'prompt' (the user message's content) must be text, got {_kind(content)}")
    raise ValueError(f"{where}: key 'prompt' holds no user message")


def _question_of(text: str) -> str:
    """The question in a user message: the `<image>` placeholders removed, and the data's own answer-format
    instruction cut where it can be told apart, that is where it stands on the message's last line(s)
    and names the `<answer>` tag (DeepEyes' does). An instruction written on the question's own line
    cannot be separated from it and stays in; rows that carry `extra_info.question` never get here."""
    lines = text.replace(_IMAGE_PLACEHOLDER, "").strip().splitlines()
    while len(lines) > 1 and (not lines[-1].strip() or "<answer>" in lines[-1]):
        lines.pop()
    return "\n".join(lines).strip()


def _verl_fields(row: dict, where: str) -> tuple[str, str]:
    """(question, answer) of one verl row, its first image checked for a source (not decoded). A missing
    or malformed key is a one-line ValueError naming the row and the key."""
    reward_model = row.get("reward_model")
    if not isinstance(reward_model, dict):
        raise ValueError(f"{where}: key 'reward_model' must be a mapping holding 'ground_truth', got "
                         f"{_kind(reward_model)}")
    truth = reward_model.get("ground_truth")
    if truth is None or (isinstance(truth, str) and not truth.strip()):
        raise ValueError(f"{where}: key 'reward_model.ground_truth' is missing or empty")
    if isinstance(truth, bool) or not isinstance(truth, str | int | float):
        raise ValueError(f"{where}: key 'reward_model.ground_truth' must be a string or a number, got {_kind(truth)}")
    extra = row.get("extra_info")
    question = extra.get("question") if isinstance(extra, dict) else None
    if question is not None and not isinstance(question, str):
        raise ValueError(f"{where}: key 'extra_info.question' must be a string, got {_kind(question)}")
    question = (question or "").replace(_IMAGE_PLACEHOLDER, "").strip() or _question_of(_user_text(row.get("prompt"), where))
    if not question:
        raise ValueError(f"{where}: key 'extra_info.question' is missing and the user message in key 'prompt' "
                         "holds no question")
    images = row.get("images")
    if not isinstance(images, list) or not images:
        raise ValueError(f"{where}: key 'images' must be a non-empty list of {{bytes, path}}, got {_kind(images)}"
                         + (" (empty)" if images == [] else ""))
    first = images[0]
    if not (isinstance(first, dict) and (first.get("bytes") or first.get("path"))) and not isinstance(first, str):
        raise ValueError(f"{where}: key 'images[0]' has neither bytes nor a path")
    return question, str(truth).strip()


def _first_image(value: Any, root: Path) -> dict | None:
    """The image as `{"bytes", "path"}` (bytes as stored; a path read against the parquet's folder), None
    when it cannot be read or decoded."""
    if isinstance(value, dict) and value.get("bytes"):
        data, name = value["bytes"], value.get("path")
    else:
        path = Path(str(value.get("path") if isinstance(value, dict) else value))
        path = path if path.is_absolute() else root / path
        try:
            data, name = path.read_bytes(), path.name
        except OSError:
            return None
    return None if decode_image(data) is None else {"bytes": data, "path": name}


def _verl_examples(plan: list[tuple[datasets.Dataset, Path, list[tuple[int, dict]]]], counts: dict):
    """The rows, each image decoded once to check it: an undecodable one is skipped and counted."""
    for images, root, rows in plan:
        for index, row in rows:
            value = images[index]["images"]
            counts["extra_images_dropped"] += len(value) > 1
            image = _first_image(value[0], root)
            if image is None:
                counts["undecodable_images"] += 1
                if len(counts["first_undecodable"]) < 5:
                    counts["first_undecodable"].append(row["id"])
                continue
            yield {"image": image, **row}


def verl_to_rows(
    sources: list[str | Path],
    out: str | Path,
    data_sources: list[str] | None = None,
    tools_only: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """vrft rows from verl-style parquet files, as DeepEyes released its training data (arXiv 2505.14362;
    Visual-Agent/DeepEyes): `prompt` (a system message, then a user message `"<image>\n" + question +
    instruction`), `images` (a list of `{bytes, path}`), `reward_model.ground_truth`, `extra_info.question`,
    `data_source`, `env_name` (the tool environment; empty on rows without tools).

    Each row becomes `problem` (the question, then `VERL_INSTRUCTION`), `image` (the first image, its
    bytes as stored), `solution` (`<answer>answer</answer>`), `ground_truth` (`{"answer": ...}` as JSON),
    and `question`, `answer`, `data_source`, `env_name` and `id` (`<file stem>:<row>`) as read. The
    question is `extra_info.question`, else the user message's text (`_question_of`). `data_sources` keeps
    only rows of those `data_source` values; `tools_only` only rows with an `env_name`.

    Every kept row is read and checked before any image is decoded: a missing or malformed key is a
    one-line ValueError naming the file, the row and the key. Then each image is decoded once; a row whose
    image does not decode is skipped and counted (`undecodable_images`, `first_undecodable`)."""
    if not sources:
        raise ValueError("no verl parquet file given")
    datasets.disable_progress_bars()
    plan: list[tuple[datasets.Dataset, Path, list[tuple[int, dict]]]] = []
    counts: dict[str, Any] = {"read": 0, "skipped_data_source": 0, "skipped_no_tools": 0}
    seen_sources: Counter = Counter()
    for source in sources:
        dataset = load_rows(source)
        columns = list(VERL_COLUMNS) + (["data_source"] if data_sources else []) + (["env_name"] if tools_only else [])
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise ValueError(f"{source}: column {missing[0]!r} is missing (a verl row has "
                             f"{', '.join(columns)}; it has {', '.join(dataset.column_names)})")
        rows: list[tuple[int, dict]] = []  # (row index in the file, the row's text columns)
        stem = Path(str(source)).stem
        for index, row in enumerate(dataset):
            counts["read"] += 1
            data_source = str(row.get("data_source") or "")
            env_name = str(row.get("env_name") or "")
            seen_sources[data_source] += 1
            if data_sources and data_source not in data_sources:
                counts["skipped_data_source"] += 1
                continue
            if tools_only and not env_name.strip():
                counts["skipped_no_tools"] += 1
                continue
            question, answer = _verl_fields(row, f"{source} row {index}")
            rows.append((index, {"problem": f"{question}\n{VERL_INSTRUCTION}",
                         "solution": f"<answer>{answer}</answer>", "question": question, "answer": answer,
                         "ground_truth": json.dumps({"answer": answer}), "data_source": data_source,
                         "env_name": env_name, "id": f"{stem}:{index}"}))
        plan.append((dataset.select_columns(["images"]), Path(str(source)).expanduser().parent, rows))
    if data_sources and not set(data_sources) & set(seen_sources):
        raise ValueError(f"none of the data sources {data_sources} appears in the rows (they hold: "
                         f"{', '.join(sorted(seen_sources)) or 'none'})")
    counts.update(undecodable_images=0, first_undecodable=[], extra_images_dropped=0)
    planned = sum(len(rows) for _, _, rows in plan)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as cache:
        # Streamed through a cache in a fresh folder (never a stale one reused) rather than held in
        # memory: high-resolution images add up to gigabytes.
        kept: datasets.Dataset | list = []
        if planned:
            try:
                kept = datasets.Dataset.from_generator(_verl_examples, features=VERL_FEATURES, cache_dir=cache,
                                                       gen_kwargs={"plan": plan, "counts": counts},
                                                       fingerprint=uuid.uuid4().hex)
            except ValueError:  # datasets' error for a generator that yielded nothing
                if counts["undecodable_images"] < planned:
                    raise
        path = _save(kept, out, f"verl_to_rows of {', '.join(map(str, sources))} "
                     f"({counts['undecodable_images']} undecodable images)")
        by_source = dict(Counter(kept["data_source"]))
    summary = {"mode": "verl", "source": ", ".join(map(str, sources)), "rows": len(kept), **counts,
               "data_sources": by_source}
    return path, summary


def describe(path: str | Path, summary: dict[str, Any]) -> str:
    """One line saying what a mode wrote: `prepare-data coco: 12 rows to /out (images 5, ...)`."""
    details = []
    for key, value in summary.items():
        if key in ("mode", "rows", "source") or value in (0, {}, [], None):
            continue
        if isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in list(value.items())[:5])
            value = f"[{shown}{' ...' if len(value) > 5 else ''}]"
        elif isinstance(value, list):
            value = "[" + ", ".join(map(str, value)) + "]"
        details.append(f"{key.replace('_', ' ')} {value}")
    tail = f" ({'; '.join(details)})" if details else ""
    mode, rows, source = summary.get("mode", "?"), summary.get("rows", 0), summary.get("source")
    return f"prepare-data {mode}: {rows} rows from {source} to {path}{tail}"
