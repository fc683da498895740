"""Rollout records: what the model actually wrote, beside the image it saw, every N steps.

    RUN_DIR/rollouts/step_NNNNNN.parquet     one row per completion of the step's sampled groups
    RUN_DIR/rollouts/step_NNNNNN/*.jpg       detection/grounding: ground truth (green) and predicted
                                             boxes (red, with confidences) drawn on the image
    wandb: `rollouts/samples`                the same as a Table; its images carry the boxes as
                                             wandb box groups, so wandb's overlay and class filter work

A record is read off the step's `PromptGroup`s after the learner has set the advantages, so its
scores, reward and advantage are exactly what trained. The parquet file is written under a temporary
name and renamed: a killed run leaves whole files only. A resumed run first removes the records of
steps after its checkpoint (they are made again, as their metrics are), so nothing is duplicated,
and keeps those before it, so nothing is lost.

`Observer` is what the loop calls after each step: the alarms (alarms.py) every step, the records
when due. `load_records(run_dir)` reads them back as one pandas DataFrame.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path

from vrft.orchestrator.core.boxes import Box, draw_boxes, frame_extent, jpeg, thumbnail, wandb_boxes
from vrft.orchestrator.core.records import PromptGroup, PromptItem
from vrft.orchestrator.core.tasks import gt_boxes, predicted_boxes
from vrft.orchestrator.observe.alarms import AlarmWatch
from vrft.orchestrator.observe.tracking import define_step_axes

log = logging.getLogger("vrft")
_STEP_FILE = re.compile(r"^step_(\d{6,})(\.parquet)?$")
# A run of one special token (the image's hundreds of <|image_pad|>) shown once, with its count.
_REPEATED_TOKEN = re.compile(r"(<\|[\w]+\|>)(?:\1)+")


def rollouts_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "rollouts"


def step_file(run_dir: Path, step: int) -> Path:
    return rollouts_dir(run_dir) / f"step_{step:06d}.parquet"


def prune_after(run_dir: Path, step: int) -> list[Path]:
    """Remove the records (and drawn images) of steps after `step`, and half-written files: what a
    killed run wrote past its checkpoint. Returns what was removed."""
    root = rollouts_dir(run_dir)
    if not root.is_dir():
        return []
    gone = []
    for path in sorted(root.iterdir()):
        match = _STEP_FILE.match(path.name)
        if path.name.endswith(".tmp") or (match and int(match.group(1)) > step):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            gone.append(path)
    return gone


def prompt_text(tokenizer, input_ids: list[int]) -> str:
    """The prompt as the model saw it (chat template included), image tokens collapsed."""
    text = tokenizer.decode(input_ids, skip_special_tokens=False)
    return _REPEATED_TOKEN.sub(lambda m: f"{m.group(1)}×{len(m.group(0)) // len(m.group(1))}", text)


def choose_groups(n: int, k: int, seed: int, step: int) -> list[int]:
    """`k` of the step's `n` group indices, seeded by the run and step (a resumed step picks the same)."""
    if k >= n:
        return list(range(n))
    return sorted(random.Random(f"{seed}:{step}").sample(range(n), k))


class RolloutLog:
    """Writes a step's sampled groups (see the module docstring)."""

    def __init__(self, run_dir: Path, every: int, per_step: int, seed: int, frame: str, processor,
                 thumbnail_px: int = 128, box_image_px: int = 320):
        self.run_dir, self.every, self.per_step, self.seed = Path(run_dir), every, per_step, seed
        self.frame, self.processor = frame, processor
        self.thumbnail_px, self.box_image_px = thumbnail_px, box_image_px

    def due(self, step: int) -> bool:
        """Step 1 (the baseline later steps are read against) and every `every`-th step."""
        return self.every > 0 and (step == 1 or step % self.every == 0)

    def extent(self, item: PromptItem) -> tuple[float, float]:
        images = item.inputs.images or []
        size = images[0].size if images else (1000, 1000)
        return frame_extent(self.frame, size, self.processor)

    def rows(self, step: int, groups: list[PromptGroup], images_dir: Path | None = None,
             wandb_rows: list | None = None) -> list[dict]:
        """One record per completion of the chosen groups; box images drawn into `images_dir`."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        out = []
        for gi in choose_groups(len(groups), self.per_step, self.seed, step):
            group = groups[gi]
            item = group.item
            image = item.inputs.images[0] if item.inputs.images else None
            base = {
                "step": step, "group": gi, "row_id": item.row_id, "task": item.task,
                "prompt": prompt_text(tokenizer, item.inputs.input_ids),
                "ground_truth": json.dumps(item.ground_truth, default=str, sort_keys=True),
                "image_count": len(item.inputs.images or []),
                "image_width": image.size[0] if image else None,
                "image_height": image.size[1] if image else None,
                "thumbnail": thumbnail(image, self.thumbnail_px) if image else None,
                "kept": group.kept,
            }
            truth = gt_boxes(item.task, item.ground_truth)
            extent = self.extent(item) if truth is not None else None
            for j, scored in enumerate(group.completions):
                c = scored.completion
                pred = predicted_boxes(item.task, c.text, self.frame)
                row = {**base, "index": j, "completion": c.text, "completion_tokens": len(c.token_ids),
                       "finish_reason": c.finish_reason, "policy_version": c.policy_version,
                       **{f"score/{k}": float(v) for k, v in scored.scores.items()},
                       "reward": float(scored.reward), "advantage": float(scored.advantage),
                       "gt_boxes": [b.as_list() for b in truth] if truth is not None else None,
                       "pred_boxes": [b.as_list() for b in pred] if pred is not None else None,
                       "boxes_image": None}
                if truth is not None and image is not None and images_dir is not None:
                    drawn = draw_boxes(image, extent, truth, pred or [], self.box_image_px)
                    name = f"g{gi:03d}_c{j:02d}.jpg"
                    (images_dir / name).write_bytes(jpeg(drawn, quality=75))
                    row["boxes_image"] = f"{images_dir.name}/{name}"
                if c.trajectory is not None:
                    row["turns"] = json.dumps(self.turn_rows(c.trajectory, images_dir, f"g{gi:03d}_c{j:02d}"))
                if wandb_rows is not None:
                    wandb_rows.append((row, image, truth, pred, extent))
                out.append(row)
        return out

    def turn_rows(self, trajectory, images_dir: Path | None, stem: str) -> list[dict]:
        """Every turn of a multi-turn completion: what the model wrote, the tool it called and what came
        back; for a turn that showed a new view, the view it looked at with the region the new one
        covers drawn on it (`look_image`), and the new view (`view_image`)."""
        out = []
        for t, turn in enumerate(trajectory.turns):
            entry = {"text": turn.text, "tool": turn.tool, "call": turn.call, "observation": turn.observation,
                     "error": turn.error, "look_image": None, "view_image": None}
            if turn.view is not None and turn.looked_at is not None and images_dir is not None:
                seen, shown = trajectory.views[turn.looked_at], trajectory.views[turn.view]
                region = seen.box_from_original(shown.box_to_original((0, 0, *shown.size)))
                pictures = {"look_image": draw_boxes(seen.image, seen.size, [], [Box(*region)], self.box_image_px),
                            "view_image": draw_boxes(shown.image, shown.size, [], [], self.box_image_px)}
                for key, picture in pictures.items():
                    name = f"{stem}_t{t}_{key.split('_')[0]}.jpg"
                    (images_dir / name).write_bytes(jpeg(picture, quality=75))
                    entry[key] = f"{images_dir.name}/{name}"
            out.append(entry)
        return out

    def write(self, step: int, groups: list[PromptGroup], wandb_run=None) -> Path:
        """The step's records as parquet (atomically), their box images beside it; and the wandb Table."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = step_file(self.run_dir, step)
        images_dir = path.with_suffix("")
        if images_dir.exists():  # a rerun of this step (resume): its old images go with its old file
            shutil.rmtree(images_dir)
        images_dir.mkdir(parents=True)
        wandb_rows: list | None = [] if wandb_run is not None else None
        rows = self.rows(step, groups, images_dir, wandb_rows)
        if not any(images_dir.iterdir()):
            images_dir.rmdir()
        keys = list(dict.fromkeys(k for row in rows for k in row))  # the union: tasks differ in components
        table = pa.table({k: [row.get(k) for row in rows] for k in keys})
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        if wandb_rows:
            try:  # on the step axis like every metric (define_metric repeats harmlessly)
                define_step_axes(wandb_run, {"step": step, "rollouts/samples": None}, set())
            except Exception as err:  # noqa: BLE001 - the records on disk are what counts
                log.warning("wandb: rollouts/samples not put on the step axis: %s", err)
            log_wandb_table(wandb_run, step, wandb_rows)
        return path


def log_wandb_table(run, step: int, rows: list) -> None:
    """`rollouts/samples`: one Table row per completion; box tasks' images carry wandb box groups."""
    try:
        import wandb

        columns = ["step", "row_id", "task", "image", "completion", "reward", "advantage", "scores"]
        table = wandb.Table(columns=columns)
        for row, image, truth, pred, extent in rows:
            picture = None
            if image is not None:
                boxes = wandb_boxes(truth, pred or [], extent) if truth is not None else None
                picture = wandb.Image(image.convert("RGB"), boxes=boxes)
            scores = {k[len("score/"):]: v for k, v in row.items() if k.startswith("score/")}
            table.add_data(step, row["row_id"], row["task"], picture, row["completion"], row["reward"],
                           row["advantage"], json.dumps(scores, sort_keys=True))
        run.log({"step": step, "rollouts/samples": table})
    except Exception as err:  # the records on disk are what counts; wandb never stops the run
        log.warning("wandb rollout table not logged: %s", str(err).splitlines()[0] if str(err) else err)


def load_records(run_dir: Path, steps: list[int] | None = None):
    """Every recorded step's rows as one pandas DataFrame (steps in order; a component a task lacks
    is NaN), optionally only `steps`."""
    import pandas as pd

    files = sorted(rollouts_dir(run_dir).glob("step_*.parquet"))
    frames = [pd.read_parquet(f) for f in files
              if steps is None or int(_STEP_FILE.match(f.name).group(1)) in steps]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_history(run_dir: Path) -> list[dict]:
    """metrics.jsonl's step records, skipping a line a running or killed run left half-written."""
    path = Path(run_dir) / "metrics.jsonl"
    out = []
    for line in (path.read_text().splitlines() if path.is_file() else []):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record and not record.get("summary"):
            out.append(record)
    return out


class Observer:
    """What the loop runs after each step, on its groups: the alarms, and the records when due.
    Returns the alarm metrics for the step's record."""

    def __init__(self, cfg, run_dir: Path, processor, frame: str, resume_step: int = 0, tracker=None):
        lc = cfg.logging
        self.tracker = tracker
        self.log = RolloutLog(run_dir, lc.rollouts_every, lc.rollouts_per_step, cfg.run.seed, frame,
                              processor, lc.thumbnail_px, lc.box_image_px)
        self.alarms = AlarmWatch(lc.alarms, self.log.extent, frame)
        # Records past the starting step are made again (a resume, or a fresh start in an old folder).
        prune_after(run_dir, resume_step)
        if resume_step:
            self.alarms.restore([r for r in read_history(run_dir) if 0 < r["step"] <= resume_step])

    def __call__(self, step: int, groups: list[PromptGroup]) -> dict[str, float]:
        metrics = self.alarms(step, groups)
        if self.log.due(step):
            self.log.write(step, groups, getattr(self.tracker, "wandb", None))
        return metrics
