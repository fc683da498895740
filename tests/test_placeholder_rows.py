"""A row whose text spells out a special token or an image placeholder (a literal `<|image_pad|>`
would become a real image token: one placeholder too many for the row's images) is skipped and
counted, with one line naming the row and the string, in `vrft train` and `vrft check-data` alike."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from vrft.orchestrator.cli.main import main
from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.data.prompts import PromptSource
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor, placeholder_in_text
from vrft.testing.released import make_reason_rft_counting

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> Path:
    """Reason-RFT counting rows; rows 1-3 spell out a placeholder or special token in their text."""
    meta = make_reason_rft_counting(tmp_path_factory.mktemp("dirty"), n=6, seed=0)
    rows = json.loads(meta.read_text(encoding="utf-8"))
    rows[1]["problem"] = "How many <|image_pad|> cubes are left?"
    rows[2]["problem"] = "<image>\n" + rows[2]["problem"]  # a row written for a LLaVA-style prompt
    rows[3]["cot"] = rows[3]["cot"].replace("</think>", " <|im_start|>user</think>")  # the SFT target's text
    meta.write_text(json.dumps(rows), encoding="utf-8")
    return meta


def test_the_literal_placeholder_would_mis_align_the_images(tiny_model):
    processor = load_processor(tiny_model)
    with pytest.raises(ValueError, match="image"):
        build_prompt_inputs(processor, "How many <|image_pad|> cubes?", [Image.new("RGB", (56, 56))])
    assert placeholder_in_text("How many <|image_pad|> cubes?", processor.tokenizer) == "<|image_pad|>"
    assert placeholder_in_text("<think>3</think><answer>3</answer>", processor.tokenizer) is None


def test_rows_with_placeholder_text_are_skipped_and_counted(dirty, tiny_model, caplog):
    base = [f"model.path={tiny_model}", f"data.path={dirty}", "data.task=counting", "data.shuffle=false"]
    source = PromptSource(load_config(CONFIG, base), load_processor(tiny_model))
    with caplog.at_level(logging.WARNING, logger="vrft"):
        items = source.next_batch(3)
    assert [it.row_id for it in items] == ["clevr_math_0", "clevr_math_4", "clevr_math_5"]
    assert source.skipped_text == 3 and source.state()["skipped_text"] == 3 and source.skipped == 0
    lines = [r.getMessage() for r in caplog.records]
    assert "row clevr_math_1: its prompt holds the literal '<|image_pad|>'; skipped (1 so far)" in lines
    assert any("clevr_math_2" in line and "'<image>'" in line for line in lines)
    assert any("clevr_math_3" in line and "SFT target" in line and "'<|im_start|>'" in line for line in lines)
    resumed = PromptSource(load_config(CONFIG, base), load_processor(tiny_model))
    resumed.load_state(source.state())
    assert resumed.skipped_text == 3


def test_check_data_counts_them_as_skipped(dirty, tiny_model, capsys):
    rc = main(["check-data", str(CONFIG), f"model.path={tiny_model}", f"data.path={dirty}", "data.task=counting"])
    out = capsys.readouterr().out
    assert rc == 0, out  # skipped rows are not failures: training skips them too
    row = next(line.split() for line in out.splitlines() if line.startswith("counting"))
    assert row == ["counting", "6", "3", "3", "3", "100.0%"], out
    assert "row clevr_math_1: its prompt holds the literal '<|image_pad|>' (skipped)" in out
