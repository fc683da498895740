"""`vrft report RUN_DIR RUN_DIR`: runs side by side, from run folders written by hand (no Ray): curves
overlaid per task and component, a table of final and eval numbers with their intervals, the config
keys that differ; the page opened in headless Chromium with no console error."""

from __future__ import annotations

import json
import re

import yaml
from test_observability import chromium, rendered

from vrft.orchestrator.cli.main import main
from vrft.orchestrator.observe.compare import _ABSENT, config_differences, final_numbers
from vrft.orchestrator.observe.report import series


def write_run(run_dir, lr: float, slope: float, extra: dict | None = None) -> None:
    run_dir.mkdir(parents=True)
    config = {"run": {"name": run_dir.name, "steps": 6, "seed": 0}, "model": {"path": "m"},
              "learner": {"lr": lr, "beta": 0.04}, **(extra or {})}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [json.dumps({"sft_step": s, "sft/loss": 2.0 / s}) for s in (1, 2, 3)]
    for s in range(1, 7):
        record = {"step": s, "reward/mean": slope * s, "reward/accuracy": slope * s / 2,
                  "reward/color/mean": slope * s, "reward/color/accuracy": slope * s / 2,
                  "reward/color/format": 1.0}
        if s % 3 == 0:
            record.update({"eval/clevr_math/accuracy": 30 + slope * s, "eval/clevr_math/accuracy_ci_low": 25.0,
                           "eval/clevr_math/accuracy_ci_high": 35 + slope * s, "eval/clevr_math/seconds": 3.0})
        lines.append(json.dumps(record))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_final_numbers_carry_the_eval_interval():
    metrics = series([{"step": 3, "eval/b/accuracy": 40.0, "eval/b/accuracy_ci_low": 35.0,
                       "eval/b/accuracy_ci_high": 45.0, "reward/mean": 1.0}])
    numbers = final_numbers(metrics)
    assert numbers["eval/b/accuracy (step 3)"] == (40.0, 35.0, 45.0)
    assert numbers["reward/mean (last 1)"] == (1.0, None, None)
    assert not any("_ci_" in key for key in numbers)  # the interval is a cell's part, not a row


def test_config_differences_name_changed_and_missing_keys_only():
    a = {"run": {"name": "a", "seed": 0}, "learner": {"lr": 1e-4, "beta": 0.04}}
    b = {"run": {"name": "b", "seed": 0}, "learner": {"lr": 2e-4, "beta": 0.04}, "sft": {"steps": 30}}
    assert config_differences([a, b]) == {"learner.lr": [1e-4, 2e-4], "sft.steps": [_ABSENT, 30]}


def test_runs_side_by_side_open_in_a_headless_browser(tmp_path, capsys):
    write_run(tmp_path / "rft-lr1e-4", 1e-4, 0.1)
    write_run(tmp_path / "rft-lr2e-4", 2e-4, 0.15, {"sft": {"steps": 30}})
    out = tmp_path / "compare.html"
    assert main(["report", str(tmp_path / "rft-lr1e-4"), str(tmp_path / "rft-lr2e-4"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    page = out.read_text()
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=\"(https?:)?//", page)  # self-contained
    # One figure per reward key (2 all-rows + 3 of the task) and eval metric, and the SFT loss.
    figures = page.count('class="plotly-graph-div"')
    assert figures == 5 + 1 + 1
    # The table: each run's last eval with its interval; the last 5 steps' mean reward.
    assert "<td>30.9000 <span class=\"ci\">[25, 35.9]</span></td>" in page
    assert "reward/color/mean (last 5)" in page and "<td>0.4000</td>" in page  # (0.2+…+0.6)/5
    # The config keys that differ, and only those (run.name differs by design).
    assert "<td>learner.lr</td>" in page and "<td>sft.steps</td>" in page and "(not set)" in page
    assert "<td>learner.beta</td>" not in page and "<td>run.name</td>" not in page

    shown = chromium("--dump-dom", out.resolve().as_uri(), tmp=tmp_path)
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert shown.returncode == 0 and not console, console
    state = rendered(shown.stdout)
    assert state["plots"] == str(figures) and state["errors"] == "", state
