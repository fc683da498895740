"""Synthetic image tasks drawn with PIL, saved as Hugging Face datasets.

Nothing is downloaded: tests and the CPU demo train on these. The tasks copy the papers' data
format (Visual-RFT: `image`, `problem`, `solution`; Reason-RFT's counting prompt) so the same
reward functions and loaders serve real data, and they are kept easy enough that a ~10M-parameter
random-init VLM learns them at 56x56 in a few hundred steps: large high-contrast shapes on a white
background, few classes, and layouts aligned with the vision tokens (a 56x56 image is 2x2 merged
tokens of 28x28 pixels; counting puts at most one shape in each of those cells).

Columns: `image` (datasets `Image` feature, PNG bytes), `problem`, `solution` (`<answer>...</answer>`),
`ground_truth` (JSON string: `{"answer": "3"}` or `{"boxes": [[x1, y1, x2, y2], ...]}`, xyxy ints in
0-1000), `task`, `cot` (a short target completion `<think>...</think><answer>...</answer>` for SFT).

Read them as any dataset, with `vrft.orchestrator.data.sources` (`load_rows`, `decode_image`). A dataset saved
with `n_corrupt > 0` stores its image column as `Image(decode=False)`, so even a plain
`load_from_disk(...)[i]` never raises.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vrft.orchestrator.core.templates import COUNTING, DETECTION

TASKS = ("counting", "color", "detection")

# Four colours far apart in RGB, so one vision token is enough to tell them apart.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (20, 150, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 190, 0),
}
SHAPES = ("circle", "square", "triangle")
DETECTION_CATEGORIES = ("square", "circle")
BACKGROUND = (255, 255, 255)
# Counting and detection draw in near-black: with one high-contrast ink, "is there a shape here" is
# the same feature everywhere. Measured with the `small` model and plain SFT: counting drawn in the
# four colours with smaller shapes stayed at chance after 80 steps; in this ink and size it reached
# 94% exact after 120.
INK = (20, 20, 20)

# The papers' prompts, verbatim (orchestrator/core/templates.py): Reason-RFT's counting question
# template and Visual-RFT's detection prompt (paper Tab. 1).
COUNTING_PROMPT = COUNTING
DETECTION_PROMPT = DETECTION
# Visual-RFT classification prompt, with the shape's colour as the class.
COLOR_PROMPT = (
    "This is an image containing a shape. Please identify the color of the shape based on the image.\n"
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "The output answer format should be as follows:\n"
    "<think> ... </think> <answer>color name</answer>\n"
    "Please strictly follow the format."
)


@dataclass
class Sample:
    image: Image.Image
    problem: str
    answer: str  # the text inside <answer></answer>
    ground_truth: dict[str, Any]
    thought: str  # the text inside <think></think> of the target completion

    def row(self, task: str) -> dict[str, Any]:
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        return {
            "image": {"bytes": buf.getvalue(), "path": None},
            "problem": self.problem,
            "solution": f"<answer>{self.answer}</answer>",
            "ground_truth": json.dumps(self.ground_truth),
            "task": task,
            "cot": f"<think>{self.thought}</think><answer>{self.answer}</answer>",
        }


def _plural(word: str, n: int) -> str:
    return word if n == 1 else word + "s"


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    """Fill `shape` inside the pixel box [x0, x0+w) x [y0, y0+h) given as (x0, y0, w, h)."""
    x0, y0, w, h = box
    x1, y1 = x0 + w - 1, y0 + h - 1  # PIL's rectangle/ellipse corners are inclusive
    if shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    elif shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif shape == "triangle":
        draw.polygon([(x0 + (w - 1) / 2, y0), (x0, y1), (x1, y1)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _sample_counting(rng: random.Random, size: int) -> Sample:
    shape = rng.choice(SHAPES)
    count = rng.randint(1, 4)
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    cell = size // 2
    for index in rng.sample(range(4), count):
        side = rng.randint(cell * 2 // 3, cell - 4)
        # A 1-pixel margin inside the cell keeps neighbouring shapes from touching.
        x0 = (index % 2) * cell + rng.randint(1, cell - side - 1)
        y0 = (index // 2) * cell + rng.randint(1, cell - side - 1)
        _draw_shape(draw, shape, (x0, y0, side, side), INK)
    question = f"How many {shape}s are in the image?"
    return Sample(
        image=image,
        problem=COUNTING_PROMPT.format(question=question),
        answer=str(count),
        ground_truth={"answer": str(count)},
        thought=f"I see {count} {_plural(shape, count)}.",
    )


def _sample_color(rng: random.Random, size: int) -> Sample:
    name = rng.choice(list(COLORS))
    shape = rng.choice(SHAPES)
    image = Image.new("RGB", (size, size), BACKGROUND)
    side = rng.randint(size // 2, size * 7 // 8)
    x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
    _draw_shape(ImageDraw.Draw(image), shape, (x0, y0, side, side), COLORS[name])
    return Sample(
        image=image,
        problem=COLOR_PROMPT,
        answer=name,
        ground_truth={"answer": name},
        thought=f"The {shape} is {name}.",
    )


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    return ax + aw + gap <= bx or bx + bw + gap <= ax or ay + ah + gap <= by or by + bh + gap <= ay


def _to_1000(v: int, size: int) -> int:
    return round(v * 1000 / size)


def _sample_detection(rng: random.Random, size: int) -> Sample:
    category = rng.choice(DETECTION_CATEGORIES)
    n = rng.randint(1, 2)
    gap = max(1, size // 28)  # keep objects apart so each box is one connected blob
    hi = size * 2 // 5 if n == 2 else size * 2 // 3  # two sides + gap must fit in one dimension
    while True:  # rejection-sample the whole layout: a bad first box can leave no room for a second
        placed: list[tuple[int, int, int, int]] = []
        for _ in range(n):
            side = rng.randint(size // 3, hi)
            placed.append((rng.randint(0, size - side), rng.randint(0, size - side), side, side))
        if n == 1 or _apart(placed[0], placed[1], gap):
            break
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for box in placed:
        _draw_shape(draw, category, box, INK)
    boxes = sorted(
        [_to_1000(x, size), _to_1000(y, size), _to_1000(x + w, size), _to_1000(y + h, size)]
        for x, y, w, h in placed
    )
    answer = "[" + ", ".join(f"{{'Position': {b}, 'Confidence': 1}}" for b in boxes) + "]"
    return Sample(
        image=image,
        problem=DETECTION_PROMPT.format(category=category),
        answer=answer,
        ground_truth={"boxes": boxes},
        thought=f"I see {n} {_plural(category, n)}.",
    )


SAMPLERS: dict[str, Callable[[random.Random, int], Sample]] = {
    "counting": _sample_counting,
    "color": _sample_color,
    "detection": _sample_detection,
}


def sample_task(task: str, rng: random.Random, image_size: int = 56) -> Sample:
    """One sample of `task`; exposed so the tokenizer factory can see the tasks' text."""
    if task not in SAMPLERS:
        raise ValueError(f"unknown synthetic task {task!r}; choose from {', '.join(TASKS)}")
    return SAMPLERS[task](rng, image_size)


def _corrupt_bytes(rng: random.Random) -> bytes:
    # Starts like a PNG so a reader cannot reject it by the signature alone; the rest is noise.
    return b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(64))


def make_synthetic_data(
    out: str | Path, task: str, n: int, seed: int, n_corrupt: int = 0, image_size: int = 56
) -> Path:
    """Draw `n` samples of `task` (deterministic given `seed`) and `save_to_disk` them into `out`."""
    if task not in SAMPLERS:
        raise ValueError(f"unknown synthetic task {task!r}; choose from {', '.join(TASKS)}")
    if n < 1 or not 0 <= n_corrupt <= n:
        raise ValueError(f"need n >= 1 and 0 <= n_corrupt <= n, got n={n}, n_corrupt={n_corrupt}")
    if image_size < 28:
        raise ValueError(f"image_size must be at least 28 (one merged vision token), got {image_size}")
    # Here, not at the top: the tiny-model factory imports this module's vocabulary, and the GPU
    # check runs it where `datasets` (and pyarrow) is not installed.
    import datasets

    rng = random.Random(f"{task}:{seed}")  # string seeds are hashed deterministically (sha512)
    rows = [sample_task(task, rng, image_size).row(task) for _ in range(n)]
    for i in sorted(rng.sample(range(n), n_corrupt)):
        rows[i]["image"] = {"bytes": _corrupt_bytes(rng), "path": None}
    features = datasets.Features(
        {
            # With corrupt rows, keep the column undecoded so `ds[i]` never raises.
            "image": datasets.Image(decode=n_corrupt == 0),
            "problem": datasets.Value("string"),
            "solution": datasets.Value("string"),
            "ground_truth": datasets.Value("string"),
            "task": datasets.Value("string"),
            "cot": datasets.Value("string"),
        }
    )
    columns = {key: [row[key] for row in rows] for key in features}
    dataset = datasets.Dataset.from_dict(columns, features=features)
    out = Path(out)
    quiet = not datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar per save is noise in tests and CLI output
    try:
        dataset.save_to_disk(str(out))
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    return out
