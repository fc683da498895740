"""The image tools' demo task (vrft/testing/glyphs.py) and SFT on its tool traces: halved, the
stripes' direction is gone; in the zoomed quadrant it is plain; a written trace replays into a
trajectory whose observation is masked out of the loss."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from vrft.rollout.processor import load_processor
from vrft.rollout.tools import AnswerFrame, get_tools
from vrft.rollout.turns import ToolUse, teacher_forced
from vrft.testing.glyphs import QUADRANTS, draw, sample


@pytest.fixture(scope="module")
def tools_model(tmp_path_factory) -> str:
    from vrft.testing.tiny_model import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("glyph") / "m", tool_tokens=True, max_pixels=112 * 112))


def pixels(processor, image: Image.Image) -> np.ndarray:
    return processor.image_processor(images=[image], return_tensors="pt")["pixel_values"].numpy()


def test_the_stripes_show_only_when_zoomed(tools_model):
    processor = load_processor(tools_model)
    for quadrant in range(4):
        h, v = (draw(d, quadrant, random.Random(quadrant)) for d in ("horizontal", "vertical"))
        full = np.abs(pixels(processor, h) - pixels(processor, v))
        x1, y1, x2, y2 = (c * 224 // 1000 for c in QUADRANTS[quadrant][1])
        zoomed = np.abs(pixels(processor, h.crop((x1, y1, x2, y2))) - pixels(processor, v.crop((x1, y1, x2, y2))))
        # halved, the two directions are the same grey square to within rounding (hard-edged stripes
        # left 0.47 at the edges, which a policy learned to read); zoomed, they differ by the full range
        assert full.max() < 0.05 and full.mean() < 0.002
        assert zoomed.max() > 3.0 and zoomed.mean() > 10 * full.mean()


def test_a_trace_replays_into_a_masked_trajectory(tools_model):
    from vrft.rollout.inputs import build_prompt_inputs

    processor = load_processor(tools_model)
    tok = processor.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    row = sample(random.Random(3))
    image = Image.open(__import__("io").BytesIO(row["image"]["bytes"])).convert("RGB")
    prompt = build_prompt_inputs(processor, row["problem"], [image])
    use = ToolUse(get_tools(["zoom"]), AnswerFrame.of_family("qwen2_vl"), 2, 400)
    done = teacher_forced(processor, tok, prompt, json.loads(row["tool_trace"]), use, end)
    traj = done.trajectory
    assert [t.tool for t in traj.turns] == ["zoom", None] and traj.tool_errors == 0
    assert traj.views[1].size == (112, 112) and done.text == row["cot"]
    assert 0 in traj.token_mask and traj.token_mask[-1] == 1 and done.token_ids[-1] == end
    with pytest.raises(ValueError, match="does not replay"):
        teacher_forced(processor, tok, prompt, ["<think>no call</think>", row["cot"]], use, end)


@pytest.mark.parametrize(("trace", "message"), [
    ("{not json", "row 7: column tool_trace is not JSON"),
    ('{"turn": "x"}', "row 7: column tool_trace must be a JSON list of the model's turns"),
    ("[]", "row 7: column tool_trace must be a JSON list of the model's turns"),
])
def test_a_bad_tool_trace_is_one_line_naming_its_row(trace, message):
    from types import SimpleNamespace

    from vrft.orchestrator.data.prompts import PromptSource

    with pytest.raises(ValueError, match=message) as e:
        PromptSource._trace(SimpleNamespace(tool_schemas=[{}]), {"tool_trace": trace}, "7")
    assert "\n" not in str(e.value)
    # without tools in the run the column is not read at all
    assert PromptSource._trace(SimpleNamespace(tool_schemas=None), {"tool_trace": trace}, "7") is None


def test_the_tool_model_writes_each_quadrant_box_as_one_token_and_any_box_still_round_trips(tools_model):
    """The demo's model chooses a quarter and its box in one token each (a 15M model from scratch does
    not learn to copy four digit runs in minutes); other numbers are still digits, and every box text
    decodes back."""
    from vrft.testing.glyphs import BOX_WORDS, zoom_call

    tok = load_processor(tools_model).tokenizer
    for words, (name, box) in zip(BOX_WORDS, QUADRANTS, strict=True):
        ids = tok(zoom_call(box), add_special_tokens=False)["input_ids"]
        assert tok.convert_tokens_to_ids(words) in ids and tok.decode(ids) == zoom_call(box)
        assert tok.convert_tokens_to_ids(name) in tok(f"In the {name} quarter", add_special_tokens=False)["input_ids"]
    odd = zoom_call((100, 0, 500, 500))  # holds a quadrant's text from its third character
    ids = tok(odd, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == odd and [tok.decode([i]) for i in ids].count("1") == 1


def test_the_first_stage_shows_the_model_exactly_what_the_zoom_into_its_quarter_shows():
    """`glyph-crops` rows (the demo's first stage, where its model learns to read stripes) are the
    zoom tool's own view of the named quarter, pixel for pixel, asked in one turn."""
    from vrft.rollout.tools import View, run_tool
    from vrft.testing.glyphs import crop_sample

    for seed in range(4):
        row = crop_sample(random.Random(seed))
        rng = random.Random(seed)
        direction, quadrant = rng.choice(("horizontal", "vertical")), rng.randrange(4)
        full = draw(direction, quadrant, rng)
        body = json.dumps({"name": "zoom", "arguments": {"box": list(QUADRANTS[quadrant][1])}})
        seen = run_tool(body, [View(full)], AnswerFrame.of_family("qwen2_vl"), get_tools(["zoom"])).view.image
        crop = Image.open(__import__("io").BytesIO(row["image"]["bytes"])).convert("RGB")
        assert crop.size == seen.size == (112, 112)
        assert np.array_equal(np.asarray(crop), np.asarray(seen.convert("RGB")))
        assert json.loads(row["ground_truth"]) == {"answer": direction} and not row["tool_trace"]
