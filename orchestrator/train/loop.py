"""A whole run: optional chain-of-thought SFT (Reason-RFT stage 1), then synchronous GRPO.

    train(cfg, run_dir)
      ├─ sft phase: a learner group trains on the `cot` column, saves a HF folder, goes away
      ├─ actors: rollout workers + verifier pool + learner group + weight-sync group
      └─ for each step: grpo_step → metrics.jsonl / wandb / progress → checkpoint every N steps
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import deque
from pathlib import Path

import ray
import yaml
from ray.exceptions import RayError

from vrft.learner import TrainBatch
from vrft.learner.group import RankFailed
from vrft.orchestrator.config.describe import summary_lines
from vrft.orchestrator.config.schema import TrainConfig
from vrft.orchestrator.core.records import to_sample
from vrft.orchestrator.core.tasks import accuracy_component, data_tasks, reward_routes
from vrft.orchestrator.data.prompts import PromptSource
from vrft.orchestrator.evaluation.between_steps import (
    BestCheckpoint,
    eval_due,
    evaluate,
    load_eval_sets,
    mark_best,
)
from vrft.orchestrator.observe.rollout_log import Observer
from vrft.orchestrator.observe.tracking import Tracker, truncate_metrics
from vrft.orchestrator.runtime.actor_logs import ActorLogs
from vrft.orchestrator.runtime.cluster import start_ray
from vrft.orchestrator.runtime.faults import RunStopped, describe
from vrft.orchestrator.runtime.layout import cpu_layout
from vrft.orchestrator.runtime.placement import place
from vrft.orchestrator.runtime.session import (
    connect_weight_sync,
    shutdown,
    start_actors,
    start_learner,
    sync_weights,
)
from vrft.orchestrator.train.checkpoint import (
    has_checkpoint,
    latest_checkpoint,
    prune_checkpoints,
    read_state,
    restore_rng,
    write_checkpoint,
    write_text_atomic,
)
from vrft.orchestrator.train.parity import ParityWatch
from vrft.orchestrator.train.schedule import LaunchSchedule
from vrft.orchestrator.train.step import PendingRollout, grpo_step, launch_rollout
from vrft.rollout.processor import banned_token_ids, load_processor
from vrft.rollout.turns import ToolUse, teacher_forced, tool_use

log = logging.getLogger("vrft")


def eos_id(processor) -> int:
    tok = processor.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    return im_end if isinstance(im_end, int) and im_end != tok.unk_token_id else tok.eos_token_id


def sft_sample(item, processor, end: int, tools: ToolUse | None):
    """An SFT sample: the row's tool trace replayed with the tools (the observations masked out of the
    loss) when the run has tools and the row a trace, else its `cot` target."""
    if tools is not None and item.trace:
        done = teacher_forced(processor, processor.tokenizer, item.inputs, item.trace, tools, end)
        return to_sample(item.inputs, done.token_ids, done.trajectory)
    return to_sample(item.inputs, processor.tokenizer(item.cot, add_special_tokens=False)["input_ids"] + [end])


def run_sft(cfg: TrainConfig, processor, data: PromptSource, out: Path, tracker: Tracker,
            placement: list[dict], actor_logs: ActorLogs | None = None) -> Path:
    """Chain-of-thought SFT on the learner's DeepSpeed machinery; the result is a HF folder."""
    sft = cfg.sft
    learner_cfg = cfg.learner.model_copy(update={
        "lr": sft.lr, "lr_schedule": sft.lr_schedule, "warmup_steps": sft.warmup_steps,
        "weight_decay": sft.weight_decay, "beta": 0.0})
    pad = processor.tokenizer.pad_token_id
    group = start_learner(cfg, learner_cfg, cfg.model.path, sft.steps, pad, placement)
    for rank, pid in enumerate(group.pids):
        if actor_logs is not None:
            actor_logs.add(f"sft-learner-rank-{rank}", pid)
    end = eos_id(processor)
    tools = None
    if cfg.rollout.tools is not None:
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(cfg.model.path, trust_remote_code=cfg.model.trust_remote_code).model_type
        tools = tool_use(model_type, processor, cfg.rollout.tools.model_dump())
    try:
        for step in range(1, sft.steps + 1):
            items = data.next_batch(sft.prompts_per_step)
            if any(not it.cot and not (tools and it.trace) for it in items):
                raise ValueError("sft.steps > 0 but the dataset has rows without a `cot` target")
            samples = [sft_sample(it, processor, end, tools) for it in items]
            metrics = group.train_step(TrainBatch(samples), mode="sft")
            tracker.log({"sft_step": step, **{f"sft/{k}": v for k, v in metrics.items()}}, advance=False)
        with tempfile.TemporaryDirectory(prefix="vrft-processor-") as files:
            processor.save_pretrained(files)  # lands with the weights: the folder is whole or absent
            group.save_hf(str(out), extra_dir=files)
    finally:
        group.shutdown()
    return out


def summary_measure(accuracy: dict[str, str | None]) -> str:
    """What a run's end-of-run summary averages: `accuracy` (`reward/accuracy`) when some task has
    an accuracy component, else `reward_mean` (`reward/mean`), named as what it is."""
    return "accuracy" if any(accuracy.values()) else "reward_mean"


def step_measure(metrics: dict[str, float], measure: str) -> float | None:
    """One step's value of the summary's measure; None for an accuracy run's step whose completions
    all came from tasks without an accuracy component (mixed data): it does not count."""
    return metrics.get("reward/accuracy") if measure == "accuracy" else metrics["reward/mean"]


def summarize(history: list[float], minutes: float, measure: str = "accuracy") -> dict[str, float]:
    """`measure` over the first and last 20% of GRPO steps (`<measure>_first20`, `_last20`): the
    demo's evidence of learning."""
    k = max(1, round(0.2 * len(history)))
    first = sum(history[:k]) / k if history else 0.0
    last = sum(history[-k:]) / k if history else 0.0
    return {f"{measure}_first20": first, f"{measure}_last20": last, "minutes": minutes}


def train(cfg: TrainConfig, run_dir: Path, resume: bool = False) -> dict[str, float]:
    started = time.perf_counter()
    cfg, layout = cpu_layout(cfg)  # what the run uses is what config.yaml records
    if layout:
        log.info(layout)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    log.info("config (the keys set away from their defaults; all of them: %s):\n%s", run_dir / "config.yaml",
             "\n".join(summary_lines(cfg)))
    processor = load_processor(cfg.model.path, cfg.model.min_pixels, cfg.model.max_pixels,
                               cfg.model.trust_remote_code)
    # The tokens the engines never sample leave the learner's log-prob normaliser too (and SFT's).
    cfg = cfg.model_copy(update={"learner": cfg.learner.model_copy(
        update={"banned_token_ids": banned_token_ids(processor.tokenizer)})})
    data = PromptSource(cfg, processor, rows=slice(cfg.data.skip_rows, None) if cfg.data.skip_rows else None)
    tasks = data_tasks(data.dataset, cfg.data.task, cfg.custom_tasks())
    routes = reward_routes(cfg.rewards, tasks, data.reader.frame)
    accuracy = {route: accuracy_component(specs) for route, specs in routes.items()}
    measure = summary_measure(accuracy)
    eval_sets = load_eval_sets(cfg)  # before Ray: a bad benchmark input fails first
    if resume and not has_checkpoint(run_dir):
        log.warning("--resume %s: no complete checkpoint there; starting from step 0", run_dir)
        truncate_metrics(run_dir / "metrics.jsonl", 0)  # the earlier attempt's records would repeat
    state = read_state(latest_checkpoint(run_dir)) if resume and latest_checkpoint(run_dir) else None
    best = BestCheckpoint(cfg, state)
    start_step = state["step"] if state else 0
    history: list[float] = state["history"] if state else []
    tracker = Tracker(run_dir, cfg.model_dump(mode="json"), cfg.run.steps, cfg.logging.wandb,
                      cfg.logging.project, cfg.logging.progress, resume_step=start_step,
                      sft_steps=cfg.sft.steps if state is None or not state.get("sft_model") else 0)
    actor_logs = ActorLogs(run_dir)  # each actor's own output: RUN_DIR/logs, off the console
    started_ray, actors, placement = False, None, None
    try:
        # Alarms every step, rollout records every logging.rollouts_every (a resume drops later ones).
        observer = Observer(cfg, run_dir, processor, data.reader.frame, start_step, tracker)
        started_ray = start_ray(cfg)
        placement = place(cfg)
        model_path = cfg.model.path
        if cfg.sft.steps > 0:
            sft_dir = run_dir / "sft_model"
            if state is None or not state.get("sft_model"):
                sft_data = PromptSource(cfg, processor, rows=slice(0, cfg.sft.rows)) if cfg.sft.rows else data
                run_sft(cfg, processor, sft_data, sft_dir, tracker, placement.learner, actor_logs)
            model_path = str(sft_dir)
        if cfg.run.steps == 0:
            return summarize([], (time.perf_counter() - started) / 60, measure)
        if state:
            data.load_state(state["data"])
        actors = start_actors(cfg, model_path, routes, processor.tokenizer.pad_token_id, placement)
        connect_weight_sync(actors, cfg)
        name_actors(actor_logs, actors)
        log.info("actors: %s", ", ".join(  # which process is which, for an operator (and the fault tests)
            [f"learner rank {r} pid {pid}" for r, pid in enumerate(actors.learner.pids)]
            + [f"rollout worker {i} pid {pid}" for i, pid in enumerate(actors.workers.pids)]))
        if state:
            ckpt = latest_checkpoint(run_dir)
            actors.learner.load(str(ckpt / "learner"), "state")
            restore_rng(ckpt)
            sync_weights(actors, state["version"], cfg.sync.bucket_mb)
            tracker.message(f"resumed from {ckpt} at step {start_step}, policy version {state['version']}")
        if start_step == 0 and eval_due(cfg, 0):  # the starting model's numbers, at step 0
            tracker.log({"step": 0, **evaluate(cfg, actors.workers, processor, eval_sets, 0)}, advance=False)
        # Sync mode keeps no rollout in flight; async keeps up to max_staleness batches ahead.
        schedule = LaunchSchedule(cfg.run.mode, cfg.run.max_staleness, start_step, cfg.run.steps)
        ahead = schedule.ahead
        queue: deque[PendingRollout] = deque()
        parity = ParityWatch(cfg)  # the first step of this process checks engine/learner parity

        def launch_upto(last_step: int) -> None:
            for launch_step in schedule.due(last_step):  # orchestrator/train/schedule.py, simulated in tests
                before = data.state()
                pending = launch_rollout(cfg, actors, data.next_batch(cfg.data.prompts_per_step), launch_step)
                pending.data_state = before
                queue.append(pending)

        for step in range(start_step + 1, cfg.run.steps + 1):
            launch_upto(step)
            metrics = grpo_step(cfg, actors, queue.popleft(), step, accuracy,
                                launch_next=(lambda s=step: launch_upto(s + ahead)) if ahead else None,
                                refill=lambda n, r, s=step: launch_rollout(cfg, actors, data.next_batch(n), s, r),
                                observe=lambda groups, s=step: observer(s, groups), parity=parity)
            metrics["data/skipped_images"] = float(data.skipped)
            metrics["data/skipped_placeholder_text"] = float(data.skipped_text)
            if cfg.data.max_prompt_length:
                metrics["data/skipped_long_prompts"] = float(data.skipped_long)
            if eval_due(cfg, step):
                metrics.update(evaluate(cfg, actors.workers, processor, eval_sets, step))
            improved = best.improves(metrics)
            if improved:
                best.record(metrics, step)
            value = step_measure(metrics, measure)
            if value is not None:
                history.append(value)
            tracker.log({"step": step, **metrics})
            last = step == cfg.run.steps
            if (cfg.run.save_every and step % cfg.run.save_every == 0) or last or improved:
                ckpt = write_checkpoint(run_dir, step, {
                    # Prompts already drawn for rollouts in flight are drawn again after a resume.
                    "step": step, "version": actors.version, "history": history,
                    "data": queue[0].data_state if queue else data.state(),
                    "sft_model": str(run_dir / "sft_model") if cfg.sft.steps > 0 else None,
                    "best": best.state(),
                }, lambda path: actors.learner.save(path, "state"))
                if improved:
                    mark_best(ckpt)
                    tracker.message(f"best {best.metric} = {best.value:.4f} at step {step}: {ckpt}")
                prune_checkpoints(run_dir, cfg.run.keep_last)
        summary = summarize(history, (time.perf_counter() - started) / 60, measure)
        tracker.log({"summary": True, **summary}, advance=False)
        return summary
    except (RankFailed, RayError, RunStopped) as err:  # unrecoverable: one line naming the actor (faults.py)
        tail = actor_logs.failure_tail(err)
        if tail:  # the failed actor's own last lines, which the console did not show
            log.error(tail)
        if isinstance(err, RunStopped):
            raise
        raise RunStopped(describe(err)) from err
    finally:
        if data.skipped:
            log.warning("data: %d rows skipped for undecodable images (first ids: %s)",
                        data.skipped, ", ".join(data.skipped_ids))
        if data.skipped_text:
            log.warning("data: %d rows skipped for a special token or placeholder spelled out in their text",
                        data.skipped_text)
        tracker.close()
        if actors is not None:  # a worker replaced during the run: the new one's output too
            name_actors(actor_logs, actors)
        shutdown(actors, placement, started_ray)
        actor_logs.save_all()


def name_actors(actor_logs: ActorLogs, actors) -> None:
    """Which process is which actor, for RUN_DIR/logs/<actor>.log."""
    for rank, pid in enumerate(actors.learner.pids if actors.learner else []):
        actor_logs.add(f"learner-rank-{rank}", pid)
    for i, pid in enumerate(actors.workers.pids):
        actor_logs.add(f"rollout-worker-{i}", pid)
    if actors.pool is not None:
        try:
            pids = ray.get([a.pids.remote() for a in actors.pool.actors()], timeout=30)
        except (RayError, TimeoutError):  # a verifier lost at the end: its log is Ray's alone
            pids = []
        for i, pid in enumerate(pids):
            actor_logs.add(f"verifier-actor-{i}", pid["actor"])
