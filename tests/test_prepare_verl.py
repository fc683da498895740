"""`vrft prepare-data verl`: DeepEyes' verl-schema parquet rows (arXiv 2505.14362) become vrft question
rows that the DeepEyes-style recipe (configs/thinking_with_images/deepeyes_zoom_7b.yaml) scores at its
maximum; a malformed row is one line naming the row and the key, before any image is decoded; an
undecodable image is skipped and counted."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vrft.orchestrator.cli.data import add_data_commands
from vrft.orchestrator.cli.recipes import CONFIGS
from vrft.orchestrator.cli.reproduce import run_command
from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.data import prepare
from vrft.orchestrator.data.check import check_rows

RECIPE = CONFIGS / "thinking_with_images" / "deepeyes_zoom_7b.yaml"


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def verl_row(index: int, question: str | None, answer: str | None, image: bytes, source: str = "vstar",
             env: str = "visual_toolbox_v2") -> dict:
    """One row in DeepEyes' released schema: data_source, prompt (system, then the user message starting
    "<image>\\n"), images [{bytes, path}], ability, env_name, reward_model {style, ground_truth},
    extra_info {split, index, answer, question}. The wording is the test's own."""
    asked = question or "What is written on the sign?"
    return {
        "data_source": source,
        "prompt": [{"role": "system", "content": "You can look closer at the picture."},
                   {"role": "user", "content": f"<image>\n{asked}\nReply as <think> ... </think> <answer> ... </answer>."}],
        "images": [{"bytes": image, "path": None}],
        "ability": "vl",  # DeepEyes: "vl", or "vl_chart" on chart rows
        "env_name": env,
        "reward_model": {"style": "model", "ground_truth": answer},
        "extra_info": {"split": "train", "index": index, "answer": answer, "question": question},
    }


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_deepeyes_rows_become_question_rows_the_recipe_scores_at_its_maximum(tmp_path, capsys):
    source = write_parquet(tmp_path / "data_0.1.2_visual_toolbox_v2.parquet", [
        verl_row(0, "What colour is the umbrella?", "red", png((200, 0, 0))),
        verl_row(1, None, "STOP", png((0, 0, 200), (50, 20))),  # no extra_info.question: read from the prompt
        verl_row(2, "How many cups?", "3", png((0, 200, 0)), source="thinklite_eureka", env=""),  # no tools
        verl_row(3, "Which side is the dog on?", "left", b"\x89PNG not an image"),  # undecodable
    ])
    prep = load_config(RECIPE).recipe.prepare[0]  # the recipe's own options
    out = tmp_path / "deepeyes_vstar"
    assert run_command(add_data_commands, ["prepare-data", prep.mode, str(source), str(out), *prep.options]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith("prepare-data verl: 2 rows from ")
    assert "undecodable images 1" in line and "skipped data source 1" in line

    train = datasets.load_from_disk(str(out))["train"]
    assert train["question"] == ["What colour is the umbrella?", "What is written on the sign?"]
    assert train["problem"] == [f"{q}\n{prepare.VERL_INSTRUCTION}" for q in train["question"]]
    assert train["answer"] == ["red", "STOP"] and train["solution"] == ["<answer>red</answer>", "<answer>STOP</answer>"]
    assert [json.loads(g) for g in train["ground_truth"]] == [{"answer": "red"}, {"answer": "STOP"}]
    assert train["id"] == ["data_0.1.2_visual_toolbox_v2:0", "data_0.1.2_visual_toolbox_v2:1"]
    assert [(im.size, im.getpixel((0, 0))) for im in train["image"]] == [((40, 30), (200, 0, 0)), ((50, 20), (0, 0, 200))]

    _, summary = prepare.verl_to_rows([source], tmp_path / "all")  # no filters: the no-tool row is kept
    assert summary["rows"] == 3 and summary["undecodable_images"] == 1
    assert summary["first_undecodable"] == ["data_0.1.2_visual_toolbox_v2:3"]
    assert summary["data_sources"] == {"vstar": 2, "thinklite_eureka": 1}
    _, tools = prepare.verl_to_rows([source], tmp_path / "tools", tools_only=True)
    assert tools["rows"] == 2 and tools["skipped_no_tools"] == 1

    # The recipe reads the rows as `vrft train` does, and a perfect answer after one zoom gets every
    # reward's maximum: 0.8 accuracy + 0.2 format + 1.2 tool bonus.
    cfg = load_config(RECIPE, [f"data.path={out}", "data.frame=rel1000"])
    report = check_rows(cfg)["classification"]
    assert (report.rows, report.parsed, report.checked, report.perfect, report.failures) == (2, 2, 2, 2, [])


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["reward_model"].update(ground_truth=None), "row 1: key 'reward_model.ground_truth' is missing or empty"),
    (lambda r: r.update(images=[]), "row 1: key 'images' must be a non-empty list"),
])
def test_a_malformed_row_is_one_line_naming_the_row_and_key_before_any_image_is_decoded(
        tmp_path, monkeypatch, change, message):
    bad = verl_row(1, "Is the light on?", "yes", png((9, 9, 9)))
    change(bad)
    source = write_parquet(tmp_path / "rows.parquet", [verl_row(0, "Is it day?", "no", png((1, 2, 3))), bad])

    def no_decode(value):
        raise AssertionError("an image was decoded before every row was checked")

    monkeypatch.setattr(prepare, "decode_image", no_decode)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        run_command(add_data_commands, ["prepare-data", "verl", str(source), str(out)])
    text = str(err.value)
    assert "\n" not in text and text.startswith("vrft: error: prepare-data verl: ") and message in text
    assert str(source) in text and not out.exists()


def test_a_missing_column_or_an_absent_data_source_is_one_line(tmp_path):
    rows = [verl_row(0, "Is it day?", "no", png((1, 2, 3)))]
    source = write_parquet(tmp_path / "rows.parquet", rows)
    with pytest.raises(ValueError, match=r"none of the data sources \['chart'\] appears in the rows \(they hold: vstar\)"):
        prepare.verl_to_rows([source], tmp_path / "out", data_sources=["chart"])
    for row in rows:
        del row["reward_model"]
    source = write_parquet(tmp_path / "no_reward.parquet", rows)
    with pytest.raises(ValueError, match="column 'reward_model' is missing"):
        prepare.verl_to_rows([source], tmp_path / "out")
