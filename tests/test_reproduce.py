"""`vrft reproduce`: every shipped recipe validates (pydantic, rewards, placement against the GPUs it
declares) and dry-runs; a CPU-sized recipe runs prepare → train → eval → report end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vrft.orchestrator.cli.main import main
from vrft.orchestrator.cli.recipes import CONFIGS, list_recipes
from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.runtime.placement import gpus_needed
from vrft.verifiers import CompositeReward

RECIPES = list_recipes()


def test_there_is_a_recipe_for_every_paper_row():
    assert len(RECIPES) >= 40, RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_validates_and_dry_runs(name, capsys, tmp_path):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.recipe is not None and cfg.recipe.paper
    rewards = cfg.rewards.values() if isinstance(cfg.rewards, dict) else [cfg.rewards]
    for specs in rewards:
        if specs:
            CompositeReward(list(specs))
    assert gpus_needed(cfg) <= cfg.recipe.gpus, (gpus_needed(cfg), cfg.recipe.gpus)
    assert main(["reproduce", name, "--dry-run", "--run-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert f"GPUs: {cfg.recipe.gpus}" in out and "report beside the paper" in out
    if cfg.recipe.kind != "zero_shot":
        assert ("GRPO:" in out) == (cfg.recipe.kind in ("rft", "sft_rft"))
        assert ("SFT:" in out) == (cfg.recipe.kind in ("sft", "sft_rft"))


def test_missing_gpus_stop_before_anything_starts(tmp_path):
    gpu_recipe = next(n for n in RECIPES if load_config(CONFIGS / f"{n}.yaml").recipe.gpus > 0)
    proc = subprocess.run([sys.executable, "-m", "vrft.orchestrator.cli.main", "reproduce", gpu_recipe,
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and "GPUs; this machine has 0" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


def test_cpu_recipe_end_to_end(tmp_path, tiny_model):
    from vrft.testing.released import make_virft_classification

    full = make_virft_classification(tmp_path / "aircraft_full", n=8)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"base: {CONFIGS / 'local' / 'reproduce_cpu.yaml'}\n"
        f"model: {{path: {tiny_model}}}\n"
        f"data: {{path: {tmp_path / 'shot1'}}}\n"
        "rollout: {num_workers: 1}\nverifier: {num_actors: 1}\n"
        "recipe:\n"
        f"  prepare: [{{mode: k-shot, inputs: ['{full}'], out: '{tmp_path / 'shot1'}', options: [--k, '1']}}]\n"
        f"  evals: [{{benchmark: aircraft, data: '{full}'}}]\n")
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "vrft.orchestrator.cli.main", "reproduce", str(recipe), "--run-dir", str(run)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "shot1").is_dir()  # prepared: one row per aircraft class
    assert (run / "checkpoints" / "step_000002").is_dir()  # trained
    metrics = json.loads((run / "eval" / "aircraft" / "metrics.json").read_text())  # evaluated
    assert metrics["counts"]["items"] == 8
    result = json.loads((run / "reproduce.json").read_text())  # reported
    row = result["rows"][0]
    assert row["metric"] == "eval/aircraft/accuracy" and row["paper"] == 74.8
    assert row["vrft"] == metrics["metrics"]["accuracy"]
    assert row["within"] == (abs(row["vrft"] - 74.8) <= 2.0)
    assert "| eval/aircraft/accuracy |" in (run / "reproduce.md").read_text()
    assert "REPRODUCE eval/aircraft/accuracy vrft=" in proc.stdout


def test_recipe_files_are_in_sync_with_their_generator():
    proc = subprocess.run([sys.executable, str(CONFIGS / "make_recipes.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_paper_bases_use_the_papers_reward_semantics():
    """The Visual-RFT and Reason-RFT bases state each reward's paper-exact options (verifiers/paper_modes.py)."""
    from vrft.verifiers.paper_modes import PAPER_OPTIONS

    for base in ("visual_rft/_rl_2b.yaml", "reason_rft/_rl_2b.yaml"):
        cfg = load_config(CONFIGS / base, ["data.path=x"])
        for specs in cfg.rewards.values():
            for spec in specs:
                assert spec.options == PAPER_OPTIONS[spec.name], (base, spec.name)
