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


class Tracker:
    def __init__(self, run_dir: Path, config: dict, total_steps: int, use_wandb: bool, project: str,
                 progress: bool, resume_step: int = 0):
        self.run_dir = run_dir
        if resume_step:
            truncate_metrics(run_dir / "metrics.jsonl", resume_step)
        self.jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115 - closed in close()
        self.wandb = None
        if use_wandb:
            self.wandb = _init_wandb(run_dir, config, project)
        self.bar = tqdm(total=total_steps, initial=resume_step, desc="grpo", unit="step",
                        disable=not progress, file=sys.stderr, dynamic_ncols=True)

    def log(self, record: dict, advance: bool = True) -> None:
        self.jsonl.write(json.dumps(record, sort_keys=True) + "\n")
        if self.wandb is not None:
            numeric = {k: v for k, v in record.items() if isinstance(v, int | float)}
            try:
                if record.get("summary"):
                    self.wandb.summary.update(numeric)
                else:  # each record carries its own x-axis (step or sft_step), see _init_wandb
                    self.wandb.log(numeric)
            except Exception as err:  # a logging failure never stops training
                log.warning("wandb.log failed, disabling wandb: %s", err)
                self.wandb = None
        if advance and "step" in record:
            self.bar.update(1)
            self.bar.set_postfix({
                "reward": f"{record.get('reward/mean', 0):.3f}",
                "acc": f"{record.get('reward/accuracy', 0):.3f}",
                "tok/s": f"{record.get('throughput/tokens_per_s', 0):.0f}",
            })

    def message(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
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
    try:
        import wandb

        run = wandb.init(project=project, name=run_dir.name, dir=str(run_dir), config=config,
                         id=wandb_run_id(run_dir), resume="allow", mode=wandb_mode(), reinit="finish_previous",
                         settings=wandb.Settings(init_timeout=60, silent=True, console="off"))
        run.define_metric("sft_step")
        run.define_metric("sft/*", step_metric="sft_step")
        run.define_metric("step")
        for prefix in ("reward", "learner", "time", "rollout", "response", "groups", "throughput",
                       "verifier", "data", "sync", "policy_version", "async", "parity"):
            run.define_metric(f"{prefix}*", step_metric="step")
        return run
    except Exception as err:  # no network, bad key…: keep training, say so once
        log.warning("wandb disabled: %s", str(err).splitlines()[0] if str(err) else err)
        return None
