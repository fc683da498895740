"""The data layer on the papers' released schemas: `vrft check-data` gives every fixture full marks
through the real row path, and every kind of bad data stops `vrft train` in seconds with one line,
before Ray starts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from PIL import Image

from vrft.orchestrator.cli.main import main
from vrft.testing.released import RELEASED_TASKS, make_all

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, Path]:
    return make_all(tmp_path_factory.mktemp("released"), n=6, seed=0)


@pytest.fixture(scope="module")
def tiny_qwen25(tmp_path_factory) -> str:
    from vrft.testing.tiny_model import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("model25") / "tiny", arch="qwen2_5_vl", size="tiny"))


@pytest.mark.parametrize("name", list(RELEASED_TASKS))
def test_check_data_gives_every_released_row_full_marks(name, released, tiny_model, capsys):
    task = RELEASED_TASKS[name]
    rc = main(["check-data", str(CONFIG), f"model.path={tiny_model}", f"data.path={released[name]}",
               f"data.task={task}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    row = next(line.split() for line in out.splitlines() if line.startswith(task))
    assert row == [task, "6", "6", "0", "6", "100.0%"], out


def test_check_data_in_qwen25_pixel_frame(released, tiny_qwen25, capsys):
    """Qwen2.5-VL answers in the resized image's pixels: the ground truth is converted, the detection
    rewards take pixel coordinates, and perfect answers still get the maximum."""
    for name, task in (("virft_detection", "detection"), ("lisa_grounding", "grounding")):
        rc = main(["check-data", str(CONFIG), f"model.path={tiny_qwen25}", f"data.path={released[name]}",
                   f"data.task={task}"])
        out = capsys.readouterr().out
        assert rc == 0 and "100.0%" in out, out


def test_check_data_names_the_failing_row(tmp_path, tiny_model, capsys):
    bad = _virft(tmp_path / "bad", ["<answer>[{'Position': [10, 10, 500, 500], 'Confidence': 1}]</answer>",
                                    "<answer>[{'Position': [10, 10, 500]}]</answer>"])
    rc = main(["check-data", str(CONFIG), f"model.path={tiny_model}", f"data.path={bad}", "data.task=detection"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "row 1: " in out and "solution" in out and "1 failing" in out, out


def test_check_data_reads_a_users_own_task(tmp_path, tiny_model, capsys):
    """A task that is no paper task is the user's: its rows bring a `ground_truth` column, its rewards
    come from the config, and check-data parses every row without a paper answer format to check."""
    img = Image.new("RGB", (56, 56), (255, 255, 255))
    rows = {"image": [img] * 3, "problem": ["Read the sign."] * 3, "task": ["ocr"] * 3,
            "ground_truth": [json.dumps({"text": t}) for t in ("stop", "exit", "")]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ocr"))
    rc = main(["check-data", str(CONFIG), f"model.path={tiny_model}", f"data.path={tmp_path / 'ocr'}",
               "data.task=null", "rewards={ocr: [{name: format}]}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    row = next(line.split() for line in out.splitlines() if line.startswith("ocr"))
    assert row == ["ocr", "3", "3", "0", "0", "n/a"], out


def test_reason_rft_template_wraps_the_released_question(released, tiny_model):
    """Reason-RFT's `problem` is the bare question; its task template wraps it, and the SFT target
    is the paper's `<think>\\n..\\n</think>\\n<answer>\\n..\\n</answer>`."""
    from vrft.orchestrator.config.schema import load_config
    from vrft.orchestrator.data.prompts import RowReader
    from vrft.orchestrator.data.sources import load_rows

    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={released['reason_rft_counting']}",
                               "data.task=counting", "data.template=reason_rft/counting"])
    rows = load_rows(cfg.data.path)
    view = RowReader(cfg).read(rows[0], 0)
    assert view.problem.startswith(rows[0]["problem"] + " Output the thinking process in <think> </think>")
    assert view.ground_truth == {"answer": rows[0]["answer"]}
    assert view.sft_target.startswith("<think>\n") and view.sft_target.endswith(f"<answer>\n{rows[0]['answer']}\n</answer>")
    assert view.row_id == rows[0]["id"]


# ---- bad data: one line, non-zero, seconds, no Ray ------------------------------------------------

def _virft(out: Path, solutions: list[str], problem: bool = True, image: bool = True) -> Path:
    img = Image.new("RGB", (56, 56), (255, 255, 255))
    columns: dict = {"solution": solutions}
    features: dict = {"solution": datasets.Value("string")}
    if problem:
        columns["problem"] = ["Detect all objects belonging to the category 'circle' in the image."] * len(solutions)
        features["problem"] = datasets.Value("string")
    if image:
        columns["image"] = [img] * len(solutions)
        features["image"] = datasets.Image()
    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(out))
    return out


GOOD = "<answer>[{'Position': [10, 10, 500, 500], 'Confidence': 1}]</answer>"


@pytest.mark.parametrize("case, make, needles", [
    ("no problem column", lambda p: _virft(p, [GOOD], problem=False), ["row 0", "'problem'"]),
    ("no image column", lambda p: _virft(p, [GOOD], image=False), ["row 0", "'image'"]),
    ("unparseable ground truth", lambda p: _virft(p, [GOOD, "<answer>[{'Position': [1, 2</answer>"]),
     ["row 1", "solution"]),
    ("malformed box", lambda p: _virft(p, ["<answer>[{'Position': [500, 10, 100, 500], 'Confidence': 1}]</answer>"]),
     ["row 0", "solution"]),
    ("empty dataset", lambda p: _virft(p, []), ["data.path", "no rows"]),
    ("unknown task", lambda p: _virft(p, [GOOD]), ["bogus"]),
])
def test_bad_data_stops_train_before_ray(case, make, needles, tmp_path, tiny_model):
    data = make(tmp_path / "data")
    task = "bogus" if case == "unknown task" else "detection"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vrft.orchestrator.cli.main", "train", str(CONFIG), f"model.path={tiny_model}",
                           f"data.path={data}", f"data.task={task}", f"run.output_dir={tmp_path / 'runs'}"],
                          capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - start
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stderr
    assert len(lines) == 1 and all(n in lines[0] for n in needles), proc.stderr
    assert "Ray" not in proc.stderr and not (tmp_path / "runs").exists()
    assert seconds < 60, seconds


def test_meta_file_rows_resolve_images_relative_to_the_file(released, tiny_model):
    """Reason-RFT's JSON names images relative to itself; TRANCE rows carry two."""
    from vrft.orchestrator.data.sources import decode_image, load_rows

    rows = load_rows(released["reason_rft_spatial"])
    first = rows[0]
    assert isinstance(first["image"], list) and len(first["image"]) == 2
    assert all(decode_image(v) is not None for v in first["image"])
    meta = json.loads(Path(released["reason_rft_spatial"]).read_text())
    assert [r["id"] for r in rows] == [m["id"] for m in meta]


def test_prepare_data_k_shot_then_check(released, tiny_model, tmp_path, capsys):
    """`vrft prepare-data` writes a save_to_disk folder that `vrft check-data` accepts as it is."""
    out = tmp_path / "cls_1shot"
    assert main(["prepare-data", "k-shot", str(released["virft_classification"]), str(out), "--k", "1"]) == 0
    said = capsys.readouterr().out
    assert str(out) in said
    rc = main(["check-data", str(CONFIG), f"model.path={tiny_model}", f"data.path={out}",
               "data.task=classification"])
    table = capsys.readouterr().out
    assert rc == 0 and "100.0%" in table
    rows = datasets.load_from_disk(str(out))["train"]
    assert len(rows) == 4  # the fixture's four aircraft classes, one row each


def test_reason_rft_row_split_answer_sft_and_prompt_cap(released, tiny_model):
    """Reason-RFT's recipe: SFT on the first rows, GRPO on the rest (`sft.rows`, `data.skip_rows`);
    ANS-SFT trains on the answer alone; prompts over `data.max_prompt_length` are skipped and counted."""
    from vrft.orchestrator.config.schema import load_config
    from vrft.orchestrator.data.prompts import PromptSource
    from vrft.orchestrator.runtime.session import logprob_temperature
    from vrft.rollout.processor import load_processor

    base = [f"model.path={tiny_model}", f"data.path={released['reason_rft_counting']}", "data.task=counting",
            "data.shuffle=false"]
    processor = load_processor(tiny_model, None, None)
    cfg = load_config(CONFIG, [*base, "sft.target=answer", "data.skip_rows=4"])
    sft = PromptSource(cfg, processor, rows=slice(0, 4))
    rl = PromptSource(cfg, processor, rows=slice(4, None))
    assert [r["id"] for r in sft.dataset] == [f"clevr_math_{i}" for i in range(4)]
    assert [r["id"] for r in rl.dataset] == ["clevr_math_4", "clevr_math_5"]
    item = sft.next_batch(1)[0]
    assert item.cot == sft.dataset[0]["answer"]  # ANS-SFT: the answer alone
    capped = PromptSource(load_config(CONFIG, [*base, "data.max_prompt_length=8"]), processor)
    with pytest.raises(RuntimeError, match="no decodable samples"):
        capped.next_batch(1)  # every prompt is longer than 8 tokens: all skipped, none trains
    assert capped.skipped_long > 0
    cot = PromptSource(load_config(CONFIG, base), processor).next_batch(1)[0].cot
    assert cot.startswith("<think>\n") and "</think>\n<answer>\n" in cot
    assert logprob_temperature(load_config(CONFIG, [*base, "rollout.temperature=0.9"]),
                               load_config(CONFIG, base).learner) == 0.9
    assert logprob_temperature(cfg, load_config(CONFIG, [*base, "learner.logprob_temperature=1.0"]).learner) == 1.0
