"""A synthetic task where looking again is the only way to be right: the image tools' CPU demo
(`make demo-tools`, docs/tools.md).

A 224×224 white image holds an 80×80 square of 1-pixel stripes, horizontal or vertical, inside the
quarter of the image the question names; the question is the stripes' direction. The demo's model
sees at most 112×112 pixels (its processor's max_pixels), so the whole image reaches it halved, where
1-pixel stripes average to a flat grey square in either direction. A quarter zoomed into is 112×112,
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
of the same answer, for the no-tool run. Kept apart from `vrft.testing.synthetic.TASKS`, whose text
trains every tiny model's tokenizer.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

SIZE = 224
MARK = 80
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


def zoom_call(box: tuple[int, int, int, int]) -> str:
    return '<tool_call>{"name": "zoom", "arguments": {"box": [' + ", ".join(map(str, box)) + "]}}</tool_call>"


def draw(direction: str, quadrant: int, rng: random.Random) -> Image.Image:
    """The image: the mark's stripes alternate dark and white pixel by pixel, starting dark."""
    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    half = SIZE // 2
    qx, qy = (quadrant % 2) * half, (quadrant // 2) * half
    # even offsets, so the halving pairs each dark line with a white one: a flat grey either way
    x0 = qx + 2 * rng.randint(1, (half - MARK) // 2 - 1)
    y0 = qy + 2 * rng.randint(1, (half - MARK) // 2 - 1)
    pen = ImageDraw.Draw(image)
    for i in range(0, MARK, 2):
        if direction == "horizontal":
            pen.line([(x0, y0 + i), (x0 + MARK - 1, y0 + i)], fill=(20, 20, 20))
        else:
            pen.line([(x0 + i, y0), (x0 + i, y0 + MARK - 1)], fill=(20, 20, 20))
    return image


def sample(rng: random.Random) -> dict[str, Any]:
    direction, quadrant = rng.choice(DIRECTIONS), rng.randrange(4)
    where, box = QUADRANTS[quadrant]
    buf = io.BytesIO()
    draw(direction, quadrant, rng).save(buf, format="PNG")
    answer = f"<think>The stripes are {direction}.</think><answer>{direction}</answer>"
    problem = PROBLEM.format(where=where)
    trace = [f"<think>The mark is in the {where}.</think>{zoom_call(box)}", answer]
    return {"image": {"bytes": buf.getvalue(), "path": None}, "problem": problem,
            "solution": f"<answer>{direction}</answer>", "ground_truth": json.dumps({"answer": direction}),
            "task": "classification", "cot": answer, "tool_trace": json.dumps(trace)}


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
        out += [*turns, *announced, row["problem"], f"zoomed in on {list(box)}"]
    return out


def make_glyph_data(out: str | Path, n: int, seed: int) -> Path:
    """`n` rows (deterministic given `seed`), saved with `save_to_disk` into `out`."""
    import datasets

    rng = random.Random(f"glyph:{seed}")
    rows = [sample(rng) for _ in range(n)]
    features = datasets.Features({"image": datasets.Image(), **{k: datasets.Value("string") for k in (
        "problem", "solution", "ground_truth", "task", "cot", "tool_trace")}})
    dataset = datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)
    out = Path(out)
    dataset.save_to_disk(str(out))
    return out
