"""`vrft reproduce NAME`: one paper row, end to end — prepare the data, train, evaluate, and report the
result beside the paper's number and the tolerance.

    cfg = load_config(recipe_file("visual_rft/coco_8cls_4shot_2b"))     configs/<NAME>.yaml
    steps = plan(cfg, run_dir)            what will run, in order (also what --dry-run prints)
    check_gpus(cfg)                       one line and exit before anything starts when they are missing
    report = execute(cfg, steps, run_dir) reproduce.json / reproduce.md in the run folder

A recipe is a training config with a `recipe:` section (orchestrator/config/schema.py RecipeConfig): the
paper row, its kind (rft, sft, sft_rft, zero_shot), its GPUs, its data preparation, its benchmarks,
the paper's numbers and the tolerance.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from vrft.orchestrator.config.schema import TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # from orchestrator/cli/recipes.py


@dataclass
class Step:
    kind: str  # prepare | sft | train | eval | report
    what: str  # one line for --dry-run and the log
    argv: list[str] | None = None  # a vrft command line, where the step is one


def recipe_file(name: str) -> Path:
    """A recipe by name (`visual_rft/coco_8cls_4shot_2b`, under configs/) or a config file path."""
    path = Path(name)
    if path.is_file():
        return path
    found = CONFIGS / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not found.is_file():
        known = ", ".join(list_recipes()[:8])
        raise ValueError(f"no recipe {name!r} (configs/{name}.yaml); e.g. {known}, … (vrft reproduce --list)")
    return found


def list_recipes() -> list[str]:
    """Every config under configs/ with a `recipe:` section (bases, `_*.yaml`, are not recipes)."""
    names = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        text = path.read_text()
        if not path.name.startswith("_") and ("\nrecipe:" in text or text.startswith("recipe:")):
            names.append(str(path.relative_to(CONFIGS).with_suffix("")))
    return names


def gpus_available() -> int:
    """GPUs this machine (or the Ray cluster `RAY_ADDRESS` names) has."""
    if os.environ.get("RAY_ADDRESS"):
        import ray

        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        try:
            return int(ray.cluster_resources().get("GPU", 0))
        finally:
            ray.shutdown()
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(cfg: TrainConfig) -> None:
    need, have = cfg.recipe.gpus, gpus_available()
    if need > have:
        raise ValueError(f"recipe {cfg.recipe.paper!r} needs {need} GPUs; this machine has {have} "
                         "(run it on a GPU node or a Ray cluster: RAY_ADDRESS=... vrft reproduce ...)")


def _eval_argv(cfg: TrainConfig, model: str, spec, out: Path) -> list[str]:
    rc = cfg.rollout
    argv = ["eval", spec.benchmark, "--model", model, "--out", str(out), "--engine", rc.engine,
            "--workers", str(rc.num_workers), "--gpus-per-worker", str(rc.num_gpus_per_worker),
            "--tensor-parallel-size", str(rc.tensor_parallel_size), "--dtype", rc.dtype, "--no-progress"]
    for flag, value in (("--data", spec.data), ("--split", spec.split), ("--annotations", spec.annotations),
                        ("--images", spec.images), ("--existence-map", spec.existence_map),
                        ("--protocol", spec.protocol), ("--template", spec.template),
                        ("--template-file", spec.template_file), ("--scoring", spec.scoring),
                        ("--limit", spec.limit), ("--max-new-tokens", cfg.eval.max_new_tokens)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def evaluated_model(cfg: TrainConfig, run_dir: Path) -> str:
    """What the evaluation loads: the base model (zero-shot), the SFT folder, or the last checkpoint."""
    kind = cfg.recipe.kind
    if kind == "zero_shot":
        return cfg.model.path
    if kind == "sft":
        return str(run_dir / "sft_model")
    return str(run_dir / "checkpoints" / f"step_{cfg.run.steps:06d}")


def plan(cfg: TrainConfig, run_dir: Path) -> list[Step]:
    r = cfg.recipe
    steps: list[Step] = []
    for prep in r.prepare:
        steps.append(Step("prepare", f"prepare the data: vrft {' '.join(prep.argv)}", prep.argv))
    if r.kind in ("sft", "sft_rft"):
        steps.append(Step("sft", f"SFT: {cfg.sft.steps} steps x {cfg.sft.prompts_per_step} rows, lr {cfg.sft.lr}"))
    if r.kind in ("rft", "sft_rft"):
        steps.append(Step("train", f"GRPO: {cfg.run.steps} steps x {cfg.data.prompts_per_step} prompts x "
                          f"G={cfg.rollout.n}, lr {cfg.learner.lr}, beta {cfg.learner.beta}"))
    model = evaluated_model(cfg, run_dir)
    for spec in r.evals:
        out = run_dir / "eval" / spec.benchmark
        steps.append(Step("eval", f"evaluate {model} on {spec.benchmark}", _eval_argv(cfg, model, spec, out)))
    numbers = ", ".join(f"{k} {v}" for k, v in r.paper_result.items())
    against = f"{numbers}, tolerance {r.tolerance}" if numbers else "no paper number to compare"
    steps.append(Step("report", f"report beside the paper ({against}) in {run_dir / 'reproduce.md'}"))
    return steps


def report(cfg: TrainConfig, run_dir: Path) -> dict:
    """The measured metrics beside the paper's, from each evaluation's metrics.json."""
    r = cfg.recipe
    rows = []
    for key, paper in r.paper_result.items():
        _, bench, metric = key.split("/", 2)
        path = run_dir / "eval" / bench / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        value = metrics.get("metrics", {}).get(metric)
        within = value is not None and abs(value - paper) <= r.tolerance
        # a score from another prompt than the paper's is not the paper's number, however close
        verbatim = (metrics.get("prompt") or {}).get("verbatim")
        rows.append({"metric": key, "vrft": value, "paper": paper, "tolerance": r.tolerance, "within": within,
                     "prompt_verbatim": verbatim})
    out = {"recipe": r.paper, "kind": r.kind, "model": evaluated_model(cfg, run_dir), "rows": rows}
    (run_dir / "reproduce.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# {r.paper}", "", "| metric | vrft | paper | tolerance | within | prompt |",
             "|---|---|---|---|---|---|"]
    for x in rows:
        measured = "—" if x["vrft"] is None else f"{x['vrft']:.2f}"
        prompt = {True: "paper's", False: "NOT the paper's", "as supplied": "as supplied"}.get(x["prompt_verbatim"], "—")
        lines.append(f"| {x['metric']} | {measured} | {x['paper']} | ±{x['tolerance']} | "
                     f"{'yes' if x['within'] else 'no'} | {prompt} |")
    if any(x["prompt_verbatim"] is False for x in rows):
        lines += ["", "A row whose prompt is NOT the paper's ran vrft's own wording of it (metrics.json, "
                  "`prompt`): supply the paper's text with `eval.benchmarks[].template_file`."]
    (run_dir / "reproduce.md").write_text("\n".join(lines) + "\n")
    return out
