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


def test_a_direct_share_of_traces_answers_without_the_tool_and_replays_as_one_turn(tools_model):
    """`direct_share` (the demo's traces, so that GRPO has when-to-look left to learn): about that share
    of the rows answer at once and replay into a one-turn trajectory with no call; the rest still zoom
    into the named quarter; a share of 0 draws exactly the rows of before (the tokenizer's corpus)."""
    from vrft.rollout.inputs import build_prompt_inputs

    rows = [sample(random.Random(f"d{i}"), direct_share=0.3) for i in range(400)]
    direct = [r for r in rows if len(json.loads(r["tool_trace"])) == 1]
    assert 0.23 < len(direct) / len(rows) < 0.37
    assert all(json.loads(r["tool_trace"]) == [r["cot"]] for r in direct)
    for r in rows:
        if r not in direct:
            where = r["problem"].split("In the ")[1].split(" quarter")[0]
            assert f'"box": [{", ".join(map(str, dict(QUADRANTS)[where]))}]' in json.loads(r["tool_trace"])[0]
    # without the options a row draws exactly what it drew before them (the tokenizer's corpus)
    drawn, before = random.Random(5), random.Random(5)
    sample(drawn)
    draw(before.choice(("horizontal", "vertical")), before.randrange(4), before)
    assert drawn.getstate() == before.getstate()
    assert len(json.loads(sample(random.Random(5), direct_share=1.0)["tool_trace"])) == 1

    processor = load_processor(tools_model)
    tok = processor.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    row = direct[0]
    image = Image.open(__import__("io").BytesIO(row["image"]["bytes"])).convert("RGB")
    use = ToolUse(get_tools(["zoom"]), AnswerFrame.of_family("qwen2_vl"), 2, 400)
    done = teacher_forced(processor, tok, build_prompt_inputs(processor, row["problem"], [image]),
                          json.loads(row["tool_trace"]), use, end)
    assert [t.tool for t in done.trajectory.turns] == [None] and done.trajectory.tool_calls == 0
    assert done.text == row["cot"] and all(m == 1 for m in done.trajectory.token_mask)


def test_the_demo_rows_keep_the_mark_in_the_first_quarters_asked(tmp_path):
    """`quarters=1` (the demo's rows): every question names the top left, its mark is drawn there (the
    other three quarters are white) and its trace zooms there; out-of-range options fail first."""
    from vrft.testing.glyphs import SIZE, make_glyph_data

    for i in range(40):
        row = sample(random.Random(f"q{i}"), direct_share=0.5, quarters=1)
        assert "In the top left quarter" in row["problem"]
        turns = json.loads(row["tool_trace"])
        assert len(turns) == 1 or '"box": [0, 0, 500, 500]' in turns[0]
        pixels = np.asarray(Image.open(__import__("io").BytesIO(row["image"]["bytes"])).convert("L"))
        half = SIZE // 2
        assert pixels[:half, :half].min() < 100
        assert pixels[half:, :].min() == pixels[:, half:].min() == 255
    quarters = {sample(random.Random(f"q{i}"), quarters=2)["problem"].split(" quarter")[0] for i in range(40)}
    assert quarters == {"In the top left", "In the top right"}
    for bad, message in (({"quarters": 0}, "quarters must be 1 to 4, got 0"),
                         ({"direct_share": 1.5}, r"direct_share must be in \[0, 1\], got 1.5")):
        with pytest.raises(ValueError, match=message):
            make_glyph_data(tmp_path / "x", n=2, seed=0, **bad)
        assert not (tmp_path / "x").exists()


def test_the_makefile_command_writes_the_demo_rows_and_bad_options_are_one_line(tmp_path, capsys):
    """`vrft make-synthetic-data … --quarters 1 --direct-share 0.5`, as `make demo-tools` runs it."""
    import datasets

    from vrft.orchestrator.cli.main import main

    out = tmp_path / "demo"
    assert main(["make-synthetic-data", str(out), "--task", "glyph", "--n", "16", "--quarters", "1",
                 "--direct-share", "0.5"]) == 0
    rows = datasets.load_from_disk(str(out))
    assert len(rows) == 16 and all("In the top left quarter" in p for p in rows["problem"])
    assert 0 < sum(len(json.loads(t)) == 1 for t in rows["tool_trace"]) < 16
    for flag, value, message in (("--quarters", "5", "invalid choice: 5"),
                                 ("--direct-share", "1.5", "must be between 0 and 1, got 1.5")):
        with pytest.raises(SystemExit) as e:
            main(["make-synthetic-data", str(tmp_path / "bad"), "--task", "glyph", "--n", "2", flag, value])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and message in err[-1] and not (tmp_path / "bad").exists()
