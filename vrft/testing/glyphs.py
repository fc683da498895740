"""A synthetic task where looking again is the only way to be right: the image tools' CPU demo
(`make demo-tools`, docs/tools.md).

A 224×224 white image holds an 80×80 square of 1-pixel stripes, horizontal or vertical, inside the
quarter of the image the question names; the question is the stripes' direction. The demo's model
sees at most 112×112 pixels (its processor's max_pixels), so the whole image reaches it halved, where
the stripes average to the same plain grey square in either direction (their contrast fades in from
the square's edges so that not even the edges tell: see `draw`). A quarter zoomed into is 112×112,
shown at full resolution, where the stripes are plain. Without tools the model can only guess (0.5);
with `zoom` it can look at the named quarter and read them.

The question names the quarter because the demo's 15M model, trained from scratch for minutes, did
not learn to find the square in the image: Qwen2-VL's vision tower and M-RoPE carry only relative
positions, and in 250 SFT steps (and with tinted quarters, and with the square's own colour telling
its quarter) its choice of quarter stayed at chance (docs/measurements.md). A pretrained model finds
it; here the demo tests the loop: call the tool, read what only the zoom shows, and learn to.

Rows carry the classification columns (`problem`, `solution`, `ground_truth`, `task`, `cot`) and a
`tool_trace`: the two model turns of a right answer with the tool (a zoom into the mark's quadrant in
the 0-1000 frame, then the answer), JSON-encoded, for SFT on tool use. `cot` is the one-turn target
of the same answer, for the no-tool run.

The demo's rows (`make demo-tools`) use two options. `quarters=1` keeps every mark in the top left.
`direct_share=0.5` makes half of the traces answer at once, without the tool. SFT then leaves a model
that calls the tool only sometimes, and GRPO learns when to look. With four quarters the model must
also copy the question's quarter into its call. SFT learned that on one seed and not on another
within the demo's budget, and GRPO did not learn it (docs/measurements.md).

Kept apart from `vrft.testing.synthetic.TASKS`, whose text trains every tiny model's tokenizer.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SIZE = 224
MARK = 80
RAMP = 12  # pixels over which the stripes' contrast rises from each edge of the square (see `draw`)
GREY, CONTRAST = 137.5, 117.5  # the square's mean, and how far its lines swing around it (20 to 255)
DIRECTIONS = ("horizontal", "vertical")
# (name in the question and the thought, zoom box in the 0-1000 frame): the four quadrants.
QUADRANTS = (("top left", (0, 0, 500, 500)), ("top right", (500, 0, 1000, 500)),
             ("bottom left", (0, 500, 500, 1000)), ("bottom right", (500, 500, 1000, 1000)))
# The quarters' names and the boxes' text inside a call: the demo's model has each as one token
# (vrft.testing.tiny_model), so naming a quarter and choosing its box are one token each.
BOX_WORDS = tuple(", ".join(map(str, box)) for _, box in QUADRANTS)
WORDS = (*(name for name, _ in QUADRANTS), *BOX_WORDS)
PROBLEM = ("In the {where} quarter of this image there is a square of thin stripes. Are the stripes "
           "horizontal or vertical? Output the thinking process in <think> </think> and final answer in "
           "<answer> </answer> tags.")
CROP_PROBLEM = ("Are the stripes in this image horizontal or vertical? Output the thinking process in <think> "
                "</think> and final answer in <answer> </answer> tags.")


def zoom_call(box: tuple[int, int, int, int]) -> str:
    return '<tool_call>{"name": "zoom", "arguments": {"box": [' + ", ".join(map(str, box)) + "]}}</tool_call>"


def quarter_origin(quadrant: int) -> tuple[int, int]:
    """The pixel (x, y) of a quarter's top-left corner, quarters numbered as `QUADRANTS`."""
    return (quadrant % 2) * (SIZE // 2), (quadrant // 2) * (SIZE // 2)


def draw(direction: str, quadrant: int, rng: random.Random) -> Image.Image:
    """The image: a grey square whose stripes alternate darker and lighter pixel by pixel around the
    grey, with a contrast that ramps up linearly over `RAMP` pixels from each edge.

    Hard-edged stripes leak their direction into the halved image: at an edge the resize filter sees
    a cut-off stripe pattern, and the cut falls on the top and bottom edges for horizontal stripes,
    on the left and right for vertical ones. A policy trained on the first version learned to read
    that leak. The bicubic filter that halves the image cancels an alternating pattern whose contrast
    is constant or changes linearly under its window, so with the ramp both directions halve to the
    same plain grey square; tests/test_glyphs.py checks this on the processor's own pixels."""
    half = SIZE // 2
    qx, qy = quarter_origin(quadrant)
    # even offsets: the halving's pixel pairs line up with the stripes'
    x0 = qx + 2 * rng.randint(1, (half - MARK) // 2 - 1)
    y0 = qy + 2 * rng.randint(1, (half - MARK) // 2 - 1)
    edge = np.minimum(np.arange(MARK) + 0.5, MARK - 0.5 - np.arange(MARK))
    ramp = np.clip(edge / RAMP, 0.0, 1.0)
    sign = np.where(np.arange(MARK) % 2 == 0, 1.0, -1.0)  # +1: the darker line
    along = sign[:, None] if direction == "horizontal" else sign[None, :]
    square = GREY - CONTRAST * along * ramp[:, None] * ramp[None, :]
    pixels = np.full((SIZE, SIZE), 255.0)
    pixels[y0:y0 + MARK, x0:x0 + MARK] = square
    return Image.fromarray(np.repeat(np.rint(pixels).astype(np.uint8)[:, :, None], 3, axis=2))


def _row(image: Image.Image, problem: str, direction: str, trace: list[str] | None) -> dict[str, Any]:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    answer = f"<think>The stripes are {direction}.</think><answer>{direction}</answer>"
    return {"image": {"bytes": buf.getvalue(), "path": None}, "problem": problem,
            "solution": f"<answer>{direction}</answer>", "ground_truth": json.dumps({"answer": direction}),
            "task": "classification", "cot": answer,
            "tool_trace": json.dumps([*trace, answer]) if trace is not None else ""}


def sample(rng: random.Random, direct_share: float = 0.0, quarters: int = 4) -> dict[str, Any]:
    """A question row, its mark in one of the first `quarters` of `QUADRANTS`; its trace answers at
    once (a guess: the stripes are unreadable unzoomed) with probability `direct_share`, else zooms
    into the named quarter first."""
    direction, quadrant = rng.choice(DIRECTIONS), rng.randrange(quarters)
    where, box = QUADRANTS[quadrant]
    image = draw(direction, quadrant, rng)
    # drawn only when asked, so that rows made without it stay those of earlier versions
    direct = direct_share > 0 and rng.random() < direct_share
    return _row(image, PROBLEM.format(where=where), direction,
                [] if direct else [f"<think>The mark is in the {where}.</think>{zoom_call(box)}"])


def crop_sample(rng: random.Random) -> dict[str, Any]:
    """A quarter as the zoom shows it, asked in one turn: the demo's first stage teaches its model,
    trained from scratch, to read stripes at full resolution (a pretrained model can), before it
    learns to use the tool. Without `tool_trace`."""
    direction, quadrant = rng.choice(DIRECTIONS), rng.randrange(4)
    x, y = quarter_origin(quadrant)
    half = SIZE // 2
    return _row(draw(direction, quadrant, rng).crop((x, y, x + half, y + half)), CROP_PROBLEM, direction, None)


def corpus(n: int = 200) -> list[str]:
    """The task's text, for the tokenizer of a model made for the tools (`tool_tokens=True`)."""
    from vrft.rollout.inputs import tools_text
    from vrft.rollout.tools import get_tools

    rng = random.Random("vrft-glyph-corpus")
    # The question, the system turn that advertises the tools and the observations' text, as often
    # as the traces: else they are ~350 byte-pieces, which bury the image's 16 tokens in the prompt
    # (the share of image tokens in the context is what decides how fast a random-init model starts
    # to read the image).
    announced = [tools_text([tool.schema() for tool in get_tools(names).values()])
                 for names in (["zoom"], ["zoom", "rotate"])]
    out = []
    for _ in range(n):
        row = sample(rng)
        turns = json.loads(row["tool_trace"])
        box = QUADRANTS[rng.randrange(4)][1]
        out += [*turns, *announced, row["problem"], CROP_PROBLEM, f"zoomed in on {list(box)}"]
    return out


def make_glyph_data(out: str | Path, n: int, seed: int, crops: bool = False, direct_share: float = 0.0,
                    quarters: int = 4) -> Path:
    """`n` rows (deterministic given `seed`), saved with `save_to_disk` into `out`; `crops`: the
    first stage's one-turn quarters (`crop_sample`); `direct_share`, `quarters`: see `sample`."""
    import datasets

    if not 0.0 <= direct_share <= 1.0:
        raise ValueError(f"direct_share must be in [0, 1], got {direct_share}")
    if not 1 <= quarters <= len(QUADRANTS):
        raise ValueError(f"quarters must be 1 to {len(QUADRANTS)}, got {quarters}")
    rng = random.Random(f"glyph{'-crops' if crops else ''}:{seed}")
    rows = [crop_sample(rng) if crops else sample(rng, direct_share, quarters) for _ in range(n)]
    features = datasets.Features({"image": datasets.Image(), **{k: datasets.Value("string") for k in (
        "problem", "solution", "ground_truth", "task", "cot", "tool_trace")}})
    dataset = datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)
    out = Path(out)
    dataset.save_to_disk(str(out))
    return out
