"""Fixtures in exactly the schemas the papers released (docs/sources.md V5, R6), drawn with PIL.

Tests and `vrft check-data` demos need the released forms themselves, not look-alikes: the same field
names and string forms, single-quoted detection dicts, `No Objects` negatives, LISA's `(x1,y1),(x2,y2)`,
Reason-RFT's JSON meta files with image paths relative to an image folder, and two-image TRANCE rows.

- Visual-RFT (`save_to_disk` `DatasetDict` with a "train" split; columns `image` (datasets `Image`,
  RGBA PNG as the authors' build notebook converts them), `problem`, `solution`):
  `make_virft_detection`, `make_virft_classification`, `make_lisa_grounding`.
- Reason-RFT (a `*-train-*-cot.json` list of `{id, image, problem, answer, cot}` next to an `images/`
  folder; the `cot` in the released shape `<think>...</think>\\n<answer>...</answer>`):
  `make_reason_rft_counting`, `make_reason_rft_structure` (letter and number answers),
  `make_reason_rft_spatial` (`image` a list of the initial and final state).

`RELEASED_TASKS` names the task of each builder. The images are small (56–112 px) and only roughly
match their text; they exist to be loaded, decoded and scored, not learned.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import datasets
from PIL import Image, ImageDraw

from vrft.orchestrator.core.templates import render_prompt

COLORS = {"red": (220, 30, 30), "green": (20, 150, 40), "blue": (30, 60, 220), "yellow": (235, 190, 0),
          "gray": (128, 128, 128), "purple": (130, 40, 160), "cyan": (0, 190, 200), "brown": (130, 80, 30)}
SHAPES = ("square", "circle", "triangle")
AIRCRAFT = ("Boeing 737-200", "A320", "Cessna 172", "DHC-8-100")
TRANCE_VALUES = {
    "change_size": ("small", "medium", "large"),
    "change_color": ("yellow", "gray", "cyan", "blue", "brown", "green", "red", "purple"),
    "change_material": ("glass", "metal", "rubber"),
    "change_shape": ("cube", "sphere", "cylinder"),
    "change_position": ("front", "behind", "left", "right", "front_left", "front_right", "behind_left",
                        "behind_right"),
}


def _size(rng: random.Random) -> tuple[int, int]:
    return rng.randint(56, 112), rng.randint(56, 112)


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    """`shape` filling the pixel box [x1, x2) × [y1, y2)."""
    x1, y1, x2, y2 = box
    corners = [x1, y1, x2 - 1, y2 - 1]
    if shape in ("square", "cube"):
        draw.rectangle(corners, fill=fill)
    elif shape in ("circle", "sphere"):
        draw.ellipse(corners, fill=fill)
    else:
        draw.polygon([((x1 + x2 - 1) / 2, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=fill)


def _rel(box: tuple[int, int, int, int], width: int, height: int) -> list[int]:
    """A pixel box in the 0–1000 frame, as the LISA conversion does it: int(coord / W * 1000)."""
    x1, y1, x2, y2 = box
    return [int(x1 / width * 1000), int(y1 / height * 1000), int(x2 / width * 1000), int(y2 / height * 1000)]


def _place(rng: random.Random, width: int, height: int, taken: list) -> tuple[int, int, int, int]:
    """A box of 16–30 px that does not overlap `taken` (rejection sampling; the images have room)."""
    for _ in range(200):
        side = rng.randint(16, min(30, width // 2, height // 2))
        x, y = rng.randint(0, width - side), rng.randint(0, height - side)
        box = (x, y, x + side, y + side)
        if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
            return box
    raise RuntimeError("no room for another shape")


def _save_virft(out: str | Path, rows: list[dict]) -> Path:
    """Rows as Visual-RFT's `DatasetDict({"train": ...})`, images stored RGBA (its build notebook)."""
    features = datasets.Features(
        {"image": datasets.Image(), "problem": datasets.Value("string"), "solution": datasets.Value("string")}
    )
    for row in rows:
        row["image"] = row["image"].convert("RGBA")
    columns = {key: [row[key] for row in rows] for key in features}
    out = Path(out)
    datasets.disable_progress_bars()
    train = datasets.Dataset.from_dict(columns, features=features)
    datasets.DatasetDict({"train": train}).save_to_disk(str(out))
    return out


def _canvas(rng: random.Random) -> tuple[int, int, Image.Image, ImageDraw.ImageDraw]:
    """A white image of a random size and its drawing context."""
    width, height = _size(rng)
    image = Image.new("RGB", (width, height), (255, 255, 255))
    return width, height, image, ImageDraw.Draw(image)


def make_virft_detection(out: str | Path, n: int = 8, seed: int = 0, negative_every: int = 4) -> Path:
    """Visual-RFT detection rows: one (image, category) per row, the verbatim detection prompt, the
    solution `<answer>[{'Position': [x1, y1, x2, y2], 'Confidence': 1}, ...]</answer>` (0–1000 ints);
    every `negative_every`-th row asks for an absent category: `<answer>No Objects</answer>`."""
    rng = random.Random(f"virft-detection:{seed}")
    rows = []
    for i in range(n):
        width, height, image, draw = _canvas(rng)
        present = rng.sample(SHAPES, 2)
        taken: list = []
        boxes: dict[str, list] = {s: [] for s in present}
        for shape in [present[0], *rng.choices(present, k=rng.randint(0, 2))]:
            box = _place(rng, width, height, taken)
            taken.append(box)
            _draw(draw, shape, box, (20, 20, 20))
            boxes[shape].append(_rel(box, width, height))
        negative = negative_every > 0 and i % negative_every == negative_every - 1
        category = next(s for s in SHAPES if s not in present) if negative else present[0]
        if negative:
            solution = "<answer>No Objects</answer>"
        else:
            answer = [{"Position": b, "Confidence": 1} for b in boxes[category]]
            solution = f"<answer>{answer!r}</answer>"
        problem = render_prompt("visual_rft/detection", {"category": category})
        rows.append({"image": image, "problem": problem, "solution": solution})
    return _save_virft(out, rows)


def make_virft_classification(out: str | Path, n: int = 8, seed: int = 0) -> Path:
    """Visual-RFT fine-grained classification rows (the aircraft wording): `<answer>{class}</answer>`."""
    rng = random.Random(f"virft-classification:{seed}")
    colors = list(COLORS.values())
    rows = []
    for i in range(n):
        label = AIRCRAFT[i % len(AIRCRAFT)]
        width, height = _size(rng)
        image = Image.new("RGB", (width, height), (235, 240, 250))
        _draw(ImageDraw.Draw(image), SHAPES[i % 3], _place(rng, width, height, []), colors[i % len(AIRCRAFT)])
        problem = render_prompt("visual_rft/classification", {"kind": "aircraft", "what": "model"})
        rows.append({"image": image, "problem": problem, "solution": f"<answer>{label}</answer>"})
    return _save_virft(out, rows)


def make_lisa_grounding(out: str | Path, n: int = 6, seed: int = 0) -> Path:
    """Visual-RFT's LISA grounding rows: the verbatim LISA prompt around an instruction, the solution
    `<answer>(x1,y1),(x2,y2)</answer>` in the 0–1000 frame."""
    rng = random.Random(f"lisa:{seed}")
    rows = []
    for _ in range(n):
        width, height, image, draw = _canvas(rng)
        target = _place(rng, width, height, [])
        other = _place(rng, width, height, [target])
        name, other_name = rng.sample(list(COLORS), 2)
        _draw(draw, "circle", target, COLORS[name])
        _draw(draw, "circle", other, COLORS[other_name])
        x1, y1, x2, y2 = _rel(target, width, height)
        instruction = f"the ball that has the colour of a {name} object"
        problem = render_prompt("visual_rft/lisa", {"instruction": instruction})
        solution = f"<answer>({x1},{y1}),({x2},{y2})</answer>"
        rows.append({"image": image, "problem": problem, "solution": solution})
    return _save_virft(out, rows)


def _write_meta(out_dir: str | Path, name: str, rows: list[dict], images: dict[str, Image.Image]) -> Path:
    out = Path(out_dir)
    for rel, image in images.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(out / rel)
    path = out / name
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=4), encoding="utf-8")
    return path


def _cot(reasoning: str, answer: str) -> str:
    # The released cot: "<think>" + GPT-4o's reply after its last "<think>" (utils/distill_cot_data.py).
    return f"<think>{reasoning}</think>\n<answer>{answer}</answer>"


def make_reason_rft_counting(out_dir: str | Path, n: int = 6, seed: int = 0) -> Path:
    """`A3-Visual-Counting-train-{n}-cot.json` (CLEVR-Math style) and its `images/` folder."""
    rng = random.Random(f"counting:{seed}")
    rows, images = [], {}
    for i in range(n):
        width, height = _size(rng)
        image = Image.new("RGB", (width, height), (240, 240, 240))
        draw = ImageDraw.Draw(image)
        taken: list = []
        colors = [rng.choice(["red", "blue", "green"]) for _ in range(rng.randint(1, 4))]
        for color in colors:
            taken.append(_place(rng, width, height, taken))
            _draw(draw, rng.choice(SHAPES), taken[-1], COLORS[color])
        left = len(colors) - colors.count("red")
        rel = f"images/clevr_math_{i}.png"
        images[rel] = image
        rows.append({
            "id": f"clevr_math_{i}", "image": rel,
            "problem": "Subtract all red objects. How many objects are left?",
            "answer": str(left),
            "cot": _cot(f"{len(colors)} objects, {colors.count('red')} of them red.", str(left)),
        })
    return _write_meta(out_dir, f"A3-Visual-Counting-train-{n}-cot.json", rows, images)


def make_reason_rft_structure(out_dir: str | Path, n: int = 6, seed: int = 0) -> Path:
    """`A2-Structure-Perception-train-{n}-cot.json` (GeoMath style): even rows multiple choice with a
    letter answer, odd rows a number."""
    rng = random.Random(f"structure:{seed}")
    rows, images = [], {}
    for i in range(n):
        a, b = rng.randint(20, 70), rng.randint(20, 70)
        c = 180 - a - b
        image = Image.new("RGB", _size(rng), (255, 255, 255))
        w, h = image.size
        ImageDraw.Draw(image).polygon([(4, h - 4), (w - 4, h - 4), (w // 3, 4)], outline=(0, 0, 0))
        rel = f"images/geomath_{i}.png"
        images[rel] = image
        question = f"As shown in the figure, two angles of the triangle are {a}° and {b}°. Find the third."
        if i % 2 == 0:
            options = rng.sample([c, c + 10, c - 5, c + 20], 4)
            letter = "ABCD"[options.index(c)]
            question += " Choices: " + " ".join(f"{k}: {v}°" for k, v in zip("ABCD", options, strict=True))
            answer = letter
        else:
            answer = str(c)
        rows.append({"id": f"geomath_{i}", "image": rel, "problem": question, "answer": answer,
                     "cot": _cot(f"A triangle's angles sum to 180°, so 180 - {a} - {b} = {c}.", answer)})
    return _write_meta(out_dir, f"A2-Structure-Perception-train-{n}-cot.json", rows, images)


def _trance_scene(objects: list[dict], size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, (200, 200, 200))
    draw = ImageDraw.Draw(image)
    scale = {"small": 10, "medium": 14, "large": 18}
    for obj in objects:
        x, y, s = obj["x"], obj["y"], scale[obj["size"]]
        _draw(draw, obj["shape"], (x, y, x + s, y + s), COLORS[obj["color"]])
    return image


def make_reason_rft_spatial(out_dir: str | Path, n: int = 6, seed: int = 0) -> Path:
    """`A1-Spatial-Transformation-train-{n}-cot.json` (TRANCE style): `image` lists the initial and
    final state, `problem` the initial objects as ('object_id', 'shape', 'size', 'color', 'material')
    tuples, `answer` the steps, e.g. `change_color(2, 'red'), change_size(0, 'small')`."""
    rng = random.Random(f"trance:{seed}")
    moves = {"front": (0, 8), "behind": (0, -8), "left": (-8, 0), "right": (8, 0), "front_left": (-8, 8),
             "front_right": (8, 8), "behind_left": (-8, -8), "behind_right": (8, -8)}
    rows, images = [], {}
    for i in range(n):
        size = (112, 84)
        objects = [
            {"id": str(k), "x": 8 + 34 * k, "y": 30,
             **{attr.removeprefix("change_"): rng.choice(TRANCE_VALUES[attr])
                for attr in ("change_shape", "change_size", "change_color", "change_material")}}
            for k in range(3)
        ]
        final = [dict(o) for o in objects]
        steps = []
        for obj_id in rng.sample(range(3), rng.randint(1, 3)):
            func = rng.choice(list(TRANCE_VALUES))
            attr = func.removeprefix("change_")
            if func == "change_position":
                value = rng.choice(TRANCE_VALUES[func])
                final[obj_id]["x"] += moves[value][0]
                final[obj_id]["y"] += moves[value][1]
            else:
                value = rng.choice([v for v in TRANCE_VALUES[func] if v != final[obj_id][attr]])
                final[obj_id][attr] = value
            steps.append(f"{func}({obj_id}, '{value}')")
        rels = [f"images/trance_{i}_initial.png", f"images/trance_{i}_final.png"]
        images[rels[0]] = _trance_scene(objects, size)
        images[rels[1]] = _trance_scene(final, size)
        tuples = ", ".join(str((o["id"], o["shape"], o["size"], o["color"], o["material"])) for o in objects)
        answer = ", ".join(steps)
        rows.append({"id": f"trance_{i}", "image": rels, "problem": f"[{tuples}]", "answer": answer,
                     "cot": _cot("Comparing the two states object by object.", answer)})
    return _write_meta(out_dir, f"A1-Spatial-Transformation-train-{n}-cot.json", rows, images)


BUILDERS: dict[str, Callable[..., Path]] = {
    "virft_detection": make_virft_detection,
    "virft_classification": make_virft_classification,
    "lisa_grounding": make_lisa_grounding,
    "reason_rft_counting": make_reason_rft_counting,
    "reason_rft_structure": make_reason_rft_structure,
    "reason_rft_spatial": make_reason_rft_spatial,
}
RELEASED_TASKS = {
    "virft_detection": "detection",
    "virft_classification": "classification",
    "lisa_grounding": "grounding",
    "reason_rft_counting": "counting",
    "reason_rft_structure": "structure",
    "reason_rft_spatial": "spatial",
}


def make_all(out_dir: str | Path, n: int = 6, seed: int = 0) -> dict[str, Path]:
    """Every fixture under `out_dir/<name>` (Reason-RFT ones: the JSON file inside that folder)."""
    out = Path(out_dir)
    return {name: build(out / name, n=n, seed=seed) for name, build in BUILDERS.items()}


def make_mixed(out: str | Path, n: int = 4, seed: int = 0) -> Path:
    """One dataset mixing tasks, each row in its own paper's columns plus a `task` column: Visual-RFT
    detection and classification rows (`solution`) and Reason-RFT counting rows (`answer`, and the
    bare question in `problem` that `reason_rft/counting` would wrap). Columns a task does not use
    are None, as `datasets` fills them when such sources are concatenated."""
    out = Path(out)
    parts = {"detection": make_virft_detection(out / "parts" / "detection", n=n, seed=seed),
             "classification": make_virft_classification(out / "parts" / "classification", n=n, seed=seed)}
    rows = []
    for task, folder in parts.items():
        for row in datasets.load_from_disk(str(folder))["train"]:
            rows.append({**row, "answer": None, "task": task})
    counting = make_reason_rft_counting(out / "parts" / "counting", n=n, seed=seed)
    for row in json.loads(counting.read_text(encoding="utf-8")):
        image = Image.open(counting.parent / row["image"]).convert("RGB")
        rows.append({"image": image, "problem": row["problem"], "solution": None, "answer": row["answer"],
                     "task": "counting"})
    features = datasets.Features({"image": datasets.Image(), "problem": datasets.Value("string"),
                                  "solution": datasets.Value("string"), "answer": datasets.Value("string"),
                                  "task": datasets.Value("string")})
    columns = {key: [row[key] for row in rows] for key in features}
    datasets.disable_progress_bars()
    datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(out / "mixed"))
    return out / "mixed"
