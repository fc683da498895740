"""Prompts honest: each benchmark's record says whether its prompt is the paper's verbatim text; a
prompt that is not is flagged in metrics.json, the printed table and `vrft reproduce`'s report; a
user can run the paper's exact text from a file (`--template-file`, `eval.benchmarks[].template_file`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vrft.orchestrator.cli.main import main
from vrft.orchestrator.config.schema import EvalSpec
from vrft.orchestrator.evaluation.driver import load_eval_set
from vrft.testing.released import make_reason_rft_counting, make_reason_rft_spatial
from vrft.verifiers.evaluation.benchmarks import BENCHMARKS


def test_every_benchmark_says_whether_its_prompt_is_verbatim():
    flagged = {name for name, b in BENCHMARKS.items() if not b.template_verbatim}
    # TRANCE's template is vrft's wording of a prompt the paper describes; LISA's rows carry the
    # training prompt, the inference script's own text is not reproduced.
    assert flagged == {"trance", "trance_left", "trance_right", "lisa_test", "lisa_val"}
    assert all(BENCHMARKS[n].template_note for n in flagged)


def rescore(tmp_path: Path, benchmark: str, data: Path, *args: str) -> dict:
    preds = tmp_path / "predictions.jsonl"
    first = json.loads(data.read_text())[0]["id"]
    preds.write_text(json.dumps({"id": first, "completion": "<answer>3</answer>"}) + "\n")
    out = tmp_path / f"out_{benchmark}"
    assert main(["eval", benchmark, "--predictions", str(preds), "--data", str(data), "--out", str(out),
                 "--limit", "1", *args]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_a_non_verbatim_prompt_is_flagged_in_metrics_and_table(tmp_path, capsys):
    trance = rescore(tmp_path, "trance", make_reason_rft_spatial(tmp_path / "spatial", n=2))
    table = capsys.readouterr().out
    assert trance["prompt"]["template"] == "reason_rft/spatial" and trance["prompt"]["verbatim"] is False
    assert "prompt NOT the paper's verbatim text" in table.splitlines()[0]
    assert any("not the paper's verbatim text" in w for w in trance["warnings"])
    counting = rescore(tmp_path, "clevr_math", make_reason_rft_counting(tmp_path / "counting", n=2))
    assert counting["prompt"] == {"template": "reason_rft/counting", "verbatim": True, "note": ""}
    assert "NOT" not in capsys.readouterr().out


def test_the_papers_text_from_a_file(tmp_path):
    data = make_reason_rft_spatial(tmp_path / "spatial", n=2)
    text = tmp_path / "trance_prompt.txt"
    text.write_text("PAPER PROMPT {{literal}}\n{question}\nEND")
    eval_set = load_eval_set(EvalSpec(benchmark="trance", data=str(data), template_file=str(text)))
    question = json.loads(data.read_text())[0]["problem"]
    assert eval_set.queries[0].problem == f"PAPER PROMPT {{literal}}\n{question}\nEND"
    assert eval_set.prompt == {"template": f"file {text}", "verbatim": "as supplied",
                               "note": "the user's template text"}
    report = rescore(tmp_path, "trance", data, "--template-file", str(text))
    assert report["prompt"]["verbatim"] == "as supplied"
    assert not any("verbatim" in w for w in report["warnings"])


@pytest.mark.parametrize(("content", "needle"), [
    ("{nope}", "needs field 'nope'"), ("{}", "every {field} must name a column"), ("", "is empty")])
def test_a_bad_template_file_is_one_line(tmp_path, content, needle):
    data = make_reason_rft_spatial(tmp_path / "spatial", n=2)
    text = tmp_path / "t.txt"
    text.write_text(content)
    with pytest.raises(ValueError, match=needle):
        load_eval_set(EvalSpec(benchmark="trance", data=str(data), template_file=str(text)))
    with pytest.raises(ValueError, match="not both"):
        load_eval_set(EvalSpec(benchmark="trance", data=str(data), template_file=str(text),
                               template="reason_rft/counting"))


def test_reproduce_report_flags_a_non_verbatim_prompt(tmp_path):
    from vrft.orchestrator.cli.recipes import report
    from vrft.orchestrator.config.schema import load_config

    cfg = load_config(Path(__file__).parent.parent / "configs" / "reason_rft" / "spatial_reason_rft_2b.yaml",
                      ["model.path=m"])
    for bench in ("trance", "trance_left", "trance_right"):
        (tmp_path / "eval" / bench).mkdir(parents=True)
        (tmp_path / "eval" / bench / "metrics.json").write_text(json.dumps(
            {"metrics": {"score": 60.0}, "prompt": {"template": "reason_rft/spatial", "verbatim": False}}))
    out = report(cfg, tmp_path)
    assert [r["prompt_verbatim"] for r in out["rows"]] == [False] * len(out["rows"])
    md = (tmp_path / "reproduce.md").read_text()
    assert "| NOT the paper's |" in md and "template_file" in md
