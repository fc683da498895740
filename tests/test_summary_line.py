"""The end-of-run line of `vrft train`: `DEMO …` only when `make demo` asks for it, and reward/mean
never called accuracy. Pure functions and the Makefile's demo recipe; no Ray."""

from __future__ import annotations

import re
from pathlib import Path

from vrft.orchestrator.cli.main import build_parser, summary_line
from vrft.orchestrator.train.loop import step_measure, summarize, summary_measure

ROOT = Path(__file__).parent.parent


def test_an_accuracy_run_names_accuracy():
    measure = summary_measure({"": "classification"})
    assert measure == "accuracy"
    # 5 steps: the first and last 20% are one step each.
    history = [step_measure({"reward/accuracy": a, "reward/mean": 9.0}, measure) for a in (0.25, 0, 0, 0, 0.75)]
    summary = summarize(history, 1.5, measure)
    assert summary == {"accuracy_first20": 0.25, "accuracy_last20": 0.75, "minutes": 1.5}
    assert summary_line(summary) == "summary: accuracy_first20=0.2500 accuracy_last20=0.7500 minutes=1.50"


def test_a_task_without_accuracy_reports_reward_mean_as_reward_mean():
    measure = summary_measure({"": None, "other": None})
    assert measure == "reward_mean"
    history = [step_measure({"reward/mean": m}, measure) for m in (1.0, 1.5, 2.0, 2.5, 3.0)]
    line = summary_line(summarize(history, 0.25, measure))
    assert line == "summary: reward_mean_first20=1.0000 reward_mean_last20=3.0000 minutes=0.25"
    assert "accuracy" not in line and "DEMO" not in line


def test_a_step_without_accuracy_scored_completions_does_not_count_as_accuracy():
    # mixed data: this step's rows all came from a task without an accuracy component
    assert step_measure({"reward/mean": 2.0}, "accuracy") is None


def test_the_demo_line_only_with_demo():
    summary = {"accuracy_first20": 0.6906, "accuracy_last20": 0.8859, "minutes": 2.0}
    assert summary_line(summary, demo=True) == "DEMO accuracy_first20=0.6906 accuracy_last20=0.8859 minutes=2.00"
    assert not summary_line(summary).startswith("DEMO")
    assert build_parser().parse_args(["train", "c.yaml", "--demo"]).demo is True
    assert build_parser().parse_args(["train", "c.yaml"]).demo is False


def test_make_demo_passes_demo():
    """`make demo` is the one caller that asks for the DEMO line (its recipe's `vrft train`)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^demo:.*?\n((?:\t.*\n)+)", makefile, re.M).group(1)
    trains = [ln for ln in recipe.splitlines() if "vrft train" in ln]
    assert trains and all(ln.rstrip().endswith("--demo") for ln in trains), recipe
    others = [ln for ln in makefile.splitlines() if "vrft train" in ln and ln not in trains]
    assert not any("--demo" in ln for ln in others), others
