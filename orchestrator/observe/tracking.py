"""Where metrics go: `metrics.jsonl` (always), wandb (offline without an API key; never blocks the
run) and a console progress bar."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger("vrft")


def wandb_mode() -> str:
    """WANDB_MODE if set; online only with credentials, offline otherwise (no network wait)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").exists() and \
            "api.wandb.ai" in (Path.home() / ".netrc").read_text(errors="ignore"):
        return "online"
    return "offline"


def truncate_metrics(path: Path, resume_step: int) -> int:
    """Before a resume: keep the records of steps <= `resume_step` (the checkpoint's), drop those a
    killed run logged after it (they are logged again) and a half-written last line. Returns the
    number of lines dropped. The file is replaced atomically."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if record.get("summary") or record.get("step", 0) > resume_step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
    return dropped


AXES = ("step", "sft_step")  # the x-axis keys a record carries; every other key is plotted against one


def new_step_axes(record: dict, defined: set[str]) -> dict[str, str]:
    """wandb `define_metric` calls a record still needs: each namespace it logs (`reward/*` for
    `reward/color/accuracy`, a bare key such as `policy_version` as itself) that is not in `defined`,
    plotted against the record's own axis (`sft_step` in SFT records, else `step`). Derived from the
    keys as logged, so a new namespace (alarms/, eval/, dapo/, …) lands on the step axis without a
    list to keep in step with the code."""
    axis = "sft_step" if "sft_step" in record else "step"
    out: dict[str, str] = {}
    for key in record:
        if key in AXES or key == "summary":
            continue
        name = key.split("/", 1)[0] + "/*" if "/" in key else key
        if name not in defined and name not in out:
            out[name] = axis
    return out


def define_step_axes(run, record: dict, defined: set[str]) -> None:
    """Tell wandb `run` the x-axis of every namespace in `record` it has not been told of yet."""
    for name, axis in new_step_axes(record, defined).items():
        if axis not in defined:
            run.define_metric(axis)
            defined.add(axis)
        run.define_metric(name, step_metric=axis)
        defined.add(name)


class Tracker:
    """metrics.jsonl, wandb and the console bars of a run. The bars: SFT's (`sft_steps`) and GRPO's,
    each made when its first step is logged, so its rate and ETA count from the steady state, not
    through start-up, the SFT phase or the first step's one-off costs."""

    def __init__(self, run_dir: Path, config: dict, total_steps: int, use_wandb: bool, project: str,
                 progress: bool, resume_step: int = 0, sft_steps: int = 0):
        self.run_dir = run_dir
        if resume_step:
            truncate_metrics(run_dir / "metrics.jsonl", resume_step)
        self.jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115 - closed in close()
        self.wandb = None
        self.axes: set[str] = set()  # the wandb namespaces given their x-axis so far
        if use_wandb:
            self.wandb = _init_wandb(run_dir, config, project)
        self.progress, self.total_steps, self.sft_steps = progress, total_steps, sft_steps
        self.bar: tqdm | None = None
        self.sft_bar: tqdm | None = None

    def _bar(self, desc: str, total: int, first: int) -> tqdm:
        return tqdm(total=total, initial=first, desc=desc, unit="step", disable=not self.progress,
                    file=sys.stderr, dynamic_ncols=True, leave=True)

    def log(self, record: dict, advance: bool = True) -> None:
        self.jsonl.write(json.dumps(record, sort_keys=True) + "\n")
        if self.wandb is not None:
            numeric = {k: v for k, v in record.items() if isinstance(v, int | float)}
            try:
                if record.get("summary"):
                    self.wandb.summary.update(numeric)
                else:  # each record carries its own x-axis (step or sft_step)
                    define_step_axes(self.wandb, numeric, self.axes)
                    self.wandb.log(numeric)
            except Exception as err:  # a logging failure never stops training
                log.warning("wandb.log failed, disabling wandb: %s", err)
                self.wandb = None
        if "sft_step" in record:
            self._sft_progress(record)
        if advance and "step" in record:
            if self.bar is None:  # the first GRPO step: the bar starts here, at this step
                self.bar = self._bar("grpo", self.total_steps, record["step"])
            else:
                self.bar.update(1)
            self.bar.set_postfix({
                "reward": f"{record.get('reward/mean', 0):.3f}",
                "acc": f"{record.get('reward/accuracy', 0):.3f}",
                "tok/s": f"{record.get('throughput/tokens_per_s', 0):.0f}",
            })

    def _sft_progress(self, record: dict) -> None:
        if self.sft_bar is None:
            self.sft_bar = self._bar("sft", self.sft_steps or record["sft_step"], record["sft_step"])
        else:
            self.sft_bar.update(1)
        if "sft/loss" in record:
            self.sft_bar.set_postfix({"loss": f"{record['sft/loss']:.4f}"})
        if record["sft_step"] >= self.sft_steps:
            self.sft_bar.close()

    def message(self, text: str) -> None:
        log.info(text)  # the console handler writes above the bars (orchestrator/observe/console.py)

    def close(self) -> None:
        for bar in (self.sft_bar, self.bar):
            if bar is not None:
                bar.close()
        self.jsonl.close()
        if self.wandb is not None:
            try:
                self.wandb.finish()
            except Exception as err:
                log.warning("wandb.finish failed: %s", err)


WANDB_ID_FILE = "wandb_run_id"


def wandb_run_id(run_dir: Path) -> str:
    """The run dir's wandb run id: made on its first start and kept in the run dir, so every resume
    of the run (a requeued job included) continues the same wandb run."""
    path = run_dir / WANDB_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    import secrets

    run_id = secrets.token_hex(4)  # wandb's own ids are 8 characters too
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)
    return run_id


def _init_wandb(run_dir: Path, config: dict, project: str):
    # wandb's own lines stay off the console: its Weave suggestion (printed when an LLM library such
    # as transformers is imported) and its start/finish banners.
    os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        import wandb

        # config: the resolved run config, as RUN_DIR/config.yaml holds it (the run's config panel).
        return wandb.init(project=project, name=run_dir.name, dir=str(run_dir), config=config,
                          id=wandb_run_id(run_dir), resume="allow", mode=wandb_mode(), reinit="finish_previous",
                          settings=wandb.Settings(init_timeout=60, silent=True, console="off"))
    except Exception as err:  # no network, bad key…: keep training, say so once
        log.warning("wandb disabled: %s", str(err).splitlines()[0] if str(err) else err)
        return None
