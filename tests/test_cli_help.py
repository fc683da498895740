"""A CLI that explains itself: commands listed once, grouped, each argument with its help; `--version`;
`vrft config show` with every key's description; a typo'd key answered with the key it meant."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from vrft.orchestrator.cli.main import COMMAND_GROUPS, build_parser, main
from vrft.orchestrator.config.describe import did_you_mean, key_paths, summary_lines
from vrft.orchestrator.config.schema import TrainConfig, load_config

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_commands_are_listed_once_under_their_groups():
    parser = build_parser()
    text = parser.format_help()
    commands = subparsers(parser)
    assert "{" not in text.split("commands:")[0]  # no argparse {train,sft,...} list
    listed = [line.split()[0] for line in text.split("commands:")[1].split("examples:")[0].splitlines()
              if line.startswith("    ")]
    assert sorted(listed) == sorted(commands)  # every command, each once
    assert [c for names in COMMAND_GROUPS.values() for c in names] == listed  # in its group's place
    for group in COMMAND_GROUPS:
        assert f"\n  {group}\n" in text
    for name in commands:  # one line each: its description
        line = next(line for line in text.splitlines() if line.startswith(f"    {name} "))
        assert len(line.split()) > 3, line


def test_every_argument_of_every_command_has_help():
    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif not isinstance(action, argparse._HelpAction | argparse._VersionAction) and not action.help:
                missing.append(" ".join([*path, action.dest]))

    walk(build_parser(), ["vrft"])
    assert missing == []


def test_train_and_sft_help_show_their_own_examples_only():
    commands = subparsers(build_parser())
    for name in ("train", "sft"):
        text = commands[name].format_help()
        assert f"vrft {name} configs/" in text
        assert "make-tiny-model" not in text and "vrft report" not in text


def test_eval_help_is_in_argument_groups():
    text = subparsers(build_parser())["eval"].format_help()
    for group in ("what to evaluate:", "the benchmark's data:", "detection (COCO, LVIS):",
                  "protocol and scoring:", "engines (Ray actors):", "output:"):
        assert group in text


def test_version():
    proc = subprocess.run([sys.executable, "-m", "vrft.orchestrator.cli.main", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"vrft {version('vrft')}"


def test_config_show_gives_every_key_its_value_default_and_description(capsys):
    assert main(["config", "show", str(CONFIG), "learner.lr=0.5"]) == 0
    out = capsys.readouterr().out
    assert "  lr: 0.5   (default 1e-06)\n      # AdamW learning rate\n" in out
    assert "  n: 4   (default 8)\n      # completions per prompt (G)\n" in out
    # every leaf key of the schema is shown (sections of a list show theirs item by item)
    leaves = {k.rsplit(".", 1)[-1] for k in key_paths(TrainConfig)
              if not k.startswith(("recipe", "eval.benchmarks", "rewards"))}
    shown = {line.strip().split(":")[0] for line in out.splitlines() if not line.strip().startswith("#")}
    assert leaves <= shown, leaves - shown


def test_a_typo_names_the_key_it_meant_before_anything_starts():
    proc = subprocess.run([sys.executable, "-m", "vrft.orchestrator.cli.main", "train", str(CONFIG),
                           "learner.lrr=1"], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0].endswith("unknown key learner.lrr — did you mean learner.lr?"), lines[0]


@pytest.mark.parametrize("typo, meant", [
    ("learner.lrr", "learner.lr"), ("rollout.temprature", "rollout.temperature"), ("run.step", "run.steps"),
    ("lerner.lr", "learner.lr"), ("logging.alarms.empty_answers", "logging.alarms.empty_answer"),
    ("learner.no_such_key", None), ("surprise.key", None),  # nothing close: no guess
])
def test_did_you_mean(typo, meant):
    assert did_you_mean(typo, TrainConfig) == meant


def test_a_run_states_the_keys_it_set_away_from_the_defaults():
    cfg = load_config(CONFIG, ["learner.lr=0.5"])
    lines = summary_lines(cfg)
    learner = next(line for line in lines if line.strip().startswith("learner:"))
    assert "lr=0.5" in learner and "zero_stage" not in learner  # zero_stage stays at its default
    assert len(lines) <= 12


def test_a_config_with_a_list_of_rewards_is_shown_and_summarised():
    cfg = load_config(CONFIG, ["rewards=[{name: format, weight: 0.5}]"])
    assert '  rewards=[{"name": "format", "weight": 0.5, "options": {}}]' in summary_lines(cfg)
    assert main(["config", "show", str(CONFIG), "rewards=[{name: format, weight: 0.5}]"]) == 0
