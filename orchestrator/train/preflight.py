"""The checks every command runs before Ray or any actor starts: the config, the model path, the
rewards, the placement, the data (its first rows read and scored as perfect answers), the eval inputs.
Each problem is one line and a non-zero exit."""

from __future__ import annotations

import os
import re
from pathlib import Path

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def load_run_config(path: str, overrides: list[str]):
    """A config, or one line and a non-zero exit (no preflight: `vrft check-data` reports the data)."""
    from vrft.orchestrator.config.schema import ConfigError, load_config

    try:
        return load_config(path, overrides)
    except ConfigError as err:
        raise SystemExit(f"vrft: error: {err}") from None


def processor_if_needed(cfg):
    """The processor, only when boxes are converted to the resized image's pixels (Qwen2.5-VL)."""
    from vrft.orchestrator.data.prompts import resolve_frame

    if resolve_frame(cfg) != "resized_pixels":
        return None
    from vrft.rollout.processor import load_processor

    return load_processor(cfg.model.path, cfg.model.min_pixels, cfg.model.max_pixels, cfg.model.trust_remote_code)


def data_preflight(cfg, limit: int) -> None:
    """`vrft train`: load the data as the run will and check its first `limit` rows; one line and a
    non-zero exit on any problem."""
    from vrft.orchestrator.data.check import check_rows, first_failure

    try:
        reports = check_rows(cfg, processor_if_needed(cfg), limit=max(1, limit))
    except (ValueError, OSError, KeyError) as err:  # unreadable source, unknown task, bad frame
        raise SystemExit(f"vrft: error: {str(err).splitlines()[0]}") from None
    problem = first_failure(reports)
    if problem:
        raise SystemExit(f"vrft: error: {problem} (run vrft check-data for the full table)")


def _check_source(kind: str, path: str, hub_ok: bool) -> None:
    """A local path must exist; `org/name` may be a hub id unless the hub is off."""
    if Path(path).expanduser().exists():
        return
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if hub_ok and _HUB_ID.match(path) and not offline:
        return
    raise SystemExit(f"vrft: error: {kind} not found: {path}")


def preflight(cfg) -> None:
    _check_source("model.path", cfg.model.path, hub_ok=True)
    from vrft.verifiers import CompositeReward  # validates reward names and options

    for task, specs in (cfg.rewards.items() if isinstance(cfg.rewards, dict) else [("", cfg.rewards)]):
        if not specs and not task:
            continue  # no list: each task's defaults
        try:
            CompositeReward(list(specs))
        except (ValueError, ImportError, TypeError) as err:
            where = f"rewards.{task}" if task else "rewards"
            raise SystemExit(f"vrft: error: {where}: {str(err).splitlines()[0]}") from None
    from vrft.orchestrator.runtime.placement import check_placement

    try:
        check_placement(cfg)
    except ValueError as err:
        raise SystemExit(f"vrft: error: {err}") from None
    if cfg.rollout.engine == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise SystemExit("vrft: error: rollout.engine=vllm but vllm is not installed "
                             "(pip install 'vrft[vllm]' on a GPU machine)") from None
    data_preflight(cfg, cfg.data.check_rows)  # reads the data as the run will: seconds, not a crash later
    if cfg.eval.benchmarks:
        from vrft.orchestrator.evaluation.between_steps import load_eval_sets

        try:
            load_eval_sets(cfg)
        except ValueError as err:
            raise SystemExit(f"vrft: error: {err}") from None
