"""The run configuration: one pydantic model per package, composed here, loaded from YAML and
overridable from the command line as `section.key=value`. Unknown keys are errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vrft.learner.config import LearnerConfig
from vrft.orchestrator.config.checks import raw_problem
from vrft.orchestrator.config.thresholds import AlarmThresholds
from vrft.orchestrator.core.tasks import find_task, known_names
from vrft.orchestrator.core.templates import template_names
from vrft.rollout.config import RolloutConfig
from vrft.verifiers import RewardSpec
from vrft.verifiers.evaluation.benchmarks import get_benchmark


class _Strict(BaseModel):
    # Non-finite numbers (timeout_s=.inf) are refused: they only fail, or never fire, mid-run.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RunConfig(_Strict):
    """The run as a whole: its name and folder, steps, checkpoints, Ray and resumption."""
    name: str = Field("run", description="the run folder's name under output_dir (letters, digits, . _ -)")
    output_dir: str = Field("runs", description="the folder run folders are made in")
    seed: int = Field(0, ge=0, le=2**32 - 1,  # numpy's and the data shuffle's range
                      description="seeds the data order, sampling and the learner")
    steps: int = Field(10, ge=0, description="GRPO steps")
    save_every: int = Field(0, ge=0, description="checkpoint every N steps (0: only at the end)")
    mode: Literal["sync", "async"] = Field("sync", description="sync: each step samples with the newest "
                                           "weights; async: rollouts of the next steps run while the learner trains")
    max_staleness: int = Field(1, ge=0, description="async: policy versions a rollout may lag behind")
    ray_address: str | None = Field(None, description="None: local Ray, or the cluster of `ray job submit`")
    cluster_wait_s: float = Field(0.0, ge=0, description="on a joined cluster too small for the run: how "
                                  "long to wait for it to grow (autoscaling) before failing; 0: fail now")
    resume: Literal["never", "auto"] = Field("never", description="auto: continue from the run dir's latest "
                                             "complete checkpoint if there is one (requeued jobs), else start")
    dashboard: bool = Field(False, description="start Ray's dashboard (a local run binds it to 127.0.0.1)")
    keep_last: int = Field(0, ge=0, description="checkpoints kept (the newest; 0: all)")
    keep_best: str | None = Field(None, description="an eval metric, e.g. eval/clevr_math/accuracy: the "
                                  "checkpoint where it was best is kept (checkpoints/best)")
    keep_best_mode: Literal["max", "min"] = Field("max", description="whether keep_best keeps the highest or "
                                                  "the lowest value")
    start_timeout_s: float = Field(900.0, gt=0, description="each actor's start-up (model load, DeepSpeed "
                                   "init, engine start): past it the run stops, naming the actor")
    layout: Literal["auto", "as_set"] = Field("auto", description="auto: a local CPU-only run fills the layout "
                                              "keys its config leaves unset with the single-node CPU layout "
                                              "(orchestrator/runtime/layout.py); as_set: the schema's defaults")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        # A name is one path component: `../x` or `/abs` would put the run outside output_dir.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or ".." in name:
            raise ValueError(f"{name!r} is not a plain name (letters, digits, '.', '_', '-'; no path)")
        return name


class ModelConfig(_Strict):
    """The policy model and how its images are sized."""
    path: str = Field(description="a hub id or a local folder of a Qwen2-VL / Qwen2.5-VL / Qwen3-VL model")
    trust_remote_code: bool = Field(False, description="run the model's own code from its folder or hub repo")
    min_pixels: int | None = Field(None, ge=1, description="the image processor's min_pixels (None: the "
                                   "model's own)")
    max_pixels: int | None = Field(None, ge=1, description="the image processor's max_pixels (None: the "
                                   "model's own); larger images are resized down to it")


class DataConfig(_Strict):
    """Where rows come from and how each is read (docs/data.md)."""
    path: str = Field(description="a hub id (org/name[@split]), a save_to_disk folder, or a JSON/JSONL "
                      "meta file whose image paths are relative to it")
    split: str | None = Field(None, description="split of a hub id or DatasetDict (default: train)")
    config_name: str | None = Field(None, description="hub dataset config name")
    image_root: str | None = Field(None, description="where a meta file's relative image paths start "
                                   "(default: the file's folder)")
    eval_path: str | None = Field(None, description="held-out rows (evaluation); same forms as path")
    eval_split: str | None = Field(None, description="split of eval_path")
    prompts_per_step: int = Field(4, ge=1, description="prompts per GRPO step (each sampled rollout.n times)")
    shuffle: bool = Field(True, description="shuffle the rows each epoch (seeded by run.seed)")
    system_prompt: str | None = Field(None, description="a system message before every prompt (None: none)")
    task: str | None = Field(None, description="the task of rows without a `task` column")
    template: str | dict[str, str] | None = Field(
        None, description="prompt template (orchestrator/core/templates.py) rendered for every row, or one per "
        "task; e.g. Reason-RFT's, which wrap the row's `problem`. None: the row's `problem` is the prompt")
    frame: Literal["auto", "rel1000", "resized_pixels"] = Field(
        "auto", description="the frame the model answers boxes in; auto: by model family (frames.py)")
    check_rows: int = Field(32, ge=0, description="rows `vrft train` checks before Ray starts")
    skip_rows: int = Field(0, ge=0, description="GRPO leaves out the first N rows (Reason-RFT trains GRPO "
                           "on the rows its SFT did not see)")
    max_prompt_length: int | None = Field(None, ge=1, description="prompts longer than this (tokens) are "
                                          "skipped and counted (data/skipped_long_prompts)")


class VerifierConfig(_Strict):
    """The verifier pool: Ray actors that score completions with the task's rewards."""
    num_actors: int = Field(2, ge=1, description="verifier actors (Ray actors) scoring in parallel")
    timeout_s: float = Field(5.0, gt=0, description="a completion not scored within this scores 0 (its "
                             "scoring process is restarted)")


class SyncConfig(_Strict):
    """How the learner's weights reach the rollout engines after each step."""
    backend: Literal["auto", "gloo", "nccl", "ipc"] = Field(
        "auto", description="auto: gloo on CPU; on GPUs NCCL between separate engines and learner, CUDA IPC "
                            "when colocated (NCCL refuses two ranks on one GPU)")
    bucket_mb: float = Field(256.0, gt=0, description="weights are sent in flat buckets of about this size")
    # Bounds the group's rendezvous and each broadcast: a worker lost mid-sync costs at most this
    # before it is replaced (the in-flight rollouts are waited for first, so it need not cover them).
    timeout_s: float = Field(120.0, gt=0, description="the weight-sync group's rendezvous and each "
                             "broadcast: a worker lost mid-sync costs at most this before it is replaced")


class SFTConfig(_Strict):
    """Reason-RFT stage 1: chain-of-thought SFT on the dataset's `cot` column (0 steps: skipped)."""
    steps: int = Field(0, ge=0, description="SFT optimizer steps (0: no SFT phase)")
    prompts_per_step: int = Field(16, ge=1, description="rows per SFT step")
    lr: float = Field(1e-5, gt=0, description="SFT learning rate")  # Reason-RFT's SFT: lr 1e-5, cosine, wd 0.1
    lr_schedule: Literal["constant", "linear", "cosine"] = Field("cosine", description="SFT learning-rate "
                                                                 "schedule after the warm-up")
    warmup_steps: int = Field(0, ge=0, description="SFT steps of linear learning-rate warm-up")
    weight_decay: float = Field(0.1, description="SFT AdamW weight decay")
    target: Literal["cot", "answer", "solution"] = Field(
        "cot", description="cot: <think> reasoning + answer (CoT-SFT); answer: the answer alone (Reason-RFT's "
        "ANS-SFT); solution: the row's `solution` as released (Visual-RFT's SFT baselines)")
    rows: int | None = Field(None, ge=1, description="SFT on the first N rows of the data (file order; "
                             "Reason-RFT: 1600); None: the whole data")


class EvalSpec(_Strict):
    """One benchmark evaluated during training (the same inputs as `vrft eval`)."""
    benchmark: str = Field(description="a benchmark name (`vrft eval --help` lists them)")
    data: str | None = Field(None, description="its test rows (hub id, save_to_disk folder or JSON file)")
    split: str | None = Field(None, description="split of data")
    annotations: str | None = Field(None, description="detection: the COCO/LVIS annotation json")
    images: str | None = Field(None, description="detection: the folder of its images")
    existence_map: str | None = Field(None, description="detection: {image_id: [categories]} of the baseline "
                                      "model (the paper's protocol)")
    protocol: Literal["existence_map", "gt_categories"] | None = Field(
        None, description="detection: which categories each image is queried for (None: existence_map when "
        "one is given, else gt_categories)")
    scoring: Literal["paper", "strict"] = Field("paper", description="how answers are read: as the paper's "
                                                "released evaluation script (paper) or with vrft's parsers")
    template: str | None = Field(None, description="prompt template (None: the benchmark's)")
    template_file: str | None = Field(None, description="a file holding the prompt text to use instead of the "
                                      "benchmark's template, e.g. the paper's exact evaluation prompt; {field} is "
                                      "the row's column of that name (detection: {category})")
    limit: int | None = Field(None, ge=1, description="first N items (detection: images)")


class EngineSpec(_Strict):
    """Rollout engines started on their own, for `vrft eval`: the model, the engine section, and the run
    keys that reach Ray (ray_address, dashboard, cluster_wait_s, start_timeout_s). No learner, no
    verifier pool, no weight sync: a run config would describe actors that are never started."""
    model: ModelConfig
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    run: RunConfig = Field(default_factory=RunConfig)


class EvalConfig(_Strict):
    """Evaluation between GRPO steps on the run's own rollout engines (no second model copy)."""
    benchmarks: list[EvalSpec] = Field(default_factory=list, description="the benchmarks to evaluate")
    every: int = Field(0, ge=0, description="evaluate every N steps (0: only at_start / never)")
    at_start: bool = Field(False, description="also evaluate the starting model, at step 0")
    batch_size: int = Field(8, ge=1, description="queries per engine call")
    max_new_tokens: int | None = Field(None, ge=1, description="cap the protocols' token limits (quick runs)")


class PrepareSpec(_Strict):
    """A `vrft prepare-data` call: `vrft prepare-data MODE INPUTS... OUT OPTIONS...`."""
    mode: Literal["k-shot", "coco", "lisa", "verl"] = Field(description="the prepare-data mode")
    inputs: list[str] = Field(description="its input paths")
    out: str = Field(description="the folder it writes")
    options: list[str] = Field(default_factory=list, description="its further command-line options")

    @property
    def argv(self) -> list[str]:
        return ["prepare-data", self.mode, *self.inputs, self.out, *self.options]


class RecipeConfig(_Strict):
    """What `vrft reproduce` needs beyond training: the paper row, its data preparation, its
    evaluation, the paper's number and the tolerance, and the GPUs it was run on."""
    paper: str = Field(description="the paper, table and row this reproduces")
    kind: Literal["rft", "sft", "sft_rft", "zero_shot"] = Field(
        description="rft: GRPO; sft: the SFT phase only; sft_rft: SFT then GRPO; zero_shot: evaluation only")
    gpus: int = Field(ge=0, description="GPUs the recipe needs (the paper's count)")
    prepare: list[PrepareSpec] = Field(default_factory=list, description="the data preparation, in order, "
                                       "when the paper did not release the data as trained on")
    evals: list[EvalSpec] = Field(default_factory=list, description="benchmarks evaluated after training")
    paper_result: dict[str, float] = Field(default_factory=dict, description="eval metric -> the paper's value")
    tolerance: float = Field(2.0, ge=0, description="points of the metric the result may miss by")

    def check(self, cfg: TrainConfig) -> None:
        phases = {"rft": (False, True), "sft": (True, False), "sft_rft": (True, True), "zero_shot": (False, False)}
        sft, rl = phases[self.kind]
        if sft != (cfg.sft.steps > 0):
            raise ValueError(f"recipe.kind {self.kind} needs sft.steps {'> 0' if sft else '= 0'}")
        if rl != (cfg.run.steps > 0):
            raise ValueError(f"recipe.kind {self.kind} needs run.steps {'> 0' if rl else '= 0'}")
        metrics = set()
        for spec in self.evals:
            bench = get_benchmark(spec.benchmark)
            metrics |= {f"eval/{bench.name}/{m}" for m in bench.metrics}
        for key in self.paper_result:
            if key not in metrics:
                raise ValueError(f"recipe.paper_result {key!r} is not a metric of recipe.evals "
                                 f"(known: {', '.join(sorted(metrics)) or 'none'})")


class DapoConfig(_Strict):
    """DAPO (Yu et al. 2025) batch building, done by the orchestrator before the learner sees the
    batch. (Its third piece, masking truncated completions, is the learner's `mask_truncated`.)"""
    dynamic_sampling: bool = Field(False, description="drop groups whose rewards are all equal (no "
                                   "advantage, no gradient)")
    max_refills: int = Field(0, ge=0, description="rounds of extra prompts drawn to refill a batch "
                             "thinned by dynamic sampling (0: train on fewer)")
    overlong_buffer: int = Field(0, ge=0, description="soft overlong penalty buffer in tokens (0: off)")
    overlong_penalty: float = Field(1.0, ge=0, description="the largest overlong penalty, reached at "
                                    "max_new_tokens")


# Keys that moved: an old config names them, the error names the new place.
MOVED_KEYS = {
    ("learner", "dynamic_sampling"): "dapo.dynamic_sampling",
    ("learner", "dynamic_sampling_max_refills"): "dapo.max_refills",
    ("learner", "overlong_buffer"): "dapo.overlong_buffer",
    ("learner", "overlong_penalty"): "dapo.overlong_penalty",
}


class LoggingConfig(_Strict):
    """Where a run's numbers go: metrics.jsonl, wandb, the console, rollout records, alarms, the report."""
    wandb: bool = Field(True, description="log to wandb: offline unless an API key is set; never blocks the run")
    project: str = Field("vrft", description="the wandb project")
    progress: bool = Field(True, description="progress bars on the console")
    # Rollout records, alarms and the report: docs/observability.md.
    rollouts_every: int = Field(10, ge=0, description="write rollout records at step 1 and every N steps "
                                "(RUN_DIR/rollouts); 0: never")
    rollouts_per_step: int = Field(4, ge=1, description="prompt groups recorded per recorded step (a seeded "
                                   "sample), each with all its completions")
    thumbnail_px: int = Field(128, ge=16, description="longer side of the image thumbnail in a record")
    box_image_px: int = Field(320, ge=64, description="longer side of the images with boxes drawn")
    alarms: AlarmThresholds = Field(default_factory=AlarmThresholds, description="reward-hacking alarms: "
                                    "each one's warning threshold (docs/observability.md)")
    report: bool = Field(True, description="`vrft train` writes RUN_DIR/report.html when the run ends")


class TrainConfig(_Strict):
    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(description="the policy model")
    data: DataConfig = Field(description="the training rows")
    rewards: list[RewardSpec] | dict[str, list[RewardSpec]] = Field(
        default_factory=list, description="one list for every row, or a list per task (a task not named "
        "gets its defaults); empty: each task's defaults")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="the rollout engines and sampling")
    verifier: VerifierConfig = Field(default_factory=VerifierConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig, description="the DeepSpeed GRPO learner")
    sync: SyncConfig = Field(default_factory=SyncConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    dapo: DapoConfig = Field(default_factory=DapoConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    recipe: RecipeConfig | None = Field(None, description="a paper row for `vrft reproduce` (configs/visual_rft, "
                                        "configs/reason_rft)")
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


    def custom_tasks(self) -> set[str]:
        """Tasks the config gives rewards for that are not paper tasks (the user's own)."""
        named = set(self.rewards) if isinstance(self.rewards, dict) else set()
        return {t for t in named if find_task(t) is None}

    @model_validator(mode="after")
    def _check_sleep_level(self) -> TrainConfig:
        # Level 2 drops the engine's weights while it sleeps and wakes them uninitialised; the sync
        # that follows sends only what training changes, so frozen weights would stay garbage.
        frozen = [key for key, on in (("learner.lora_rank > 0", self.learner.lora_rank > 0),
                                      ("learner.freeze_vision", self.learner.freeze_vision)) if on]
        if self.rollout.vllm.get("sleep_level") == 2 and frozen:
            raise ValueError(f"rollout.vllm.sleep_level=2 with {' and '.join(frozen)}: the engine would wake "
                             "its frozen weights uninitialised (the sync sends only trained ones); use sleep_level 1")
        return self

    @model_validator(mode="after")
    def _check_templates(self) -> TrainConfig:
        task = self.data.task
        if task is not None and find_task(task) is None and task not in self.custom_tasks():
            raise ValueError(f"data.task {task!r} is unknown (known: {', '.join(known_names())}; "
                             "or give it rewards: rewards.<task>)")
        named = self.data.template
        for name in (named.values() if isinstance(named, dict) else [named] if named else []):
            if name not in template_names():
                raise ValueError(f"data.template {name!r} is unknown (known: {', '.join(template_names())})")
        metrics = set()
        for spec in self.eval.benchmarks:
            bench = get_benchmark(spec.benchmark)  # an unknown name fails here, at load time
            metrics |= {f"eval/{bench.name}/{m}" for m in bench.metrics}
        if self.run.keep_best is not None and self.run.keep_best not in metrics:
            raise ValueError(f"run.keep_best {self.run.keep_best!r} is not a metric of the eval benchmarks "
                             f"(known: {', '.join(sorted(metrics)) or 'none: add eval.benchmarks'})")
        if self.recipe is not None:
            self.recipe.check(self)
        return self


class ConfigError(ValueError):
    """A bad config, reported as one line before anything expensive starts."""


def apply_override(data: dict, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form section.key=value")
    dotted, raw = override.split("=", 1)
    value = yaml.safe_load(raw) if raw else ""
    node = data
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {key} is not a section")
    node[keys[-1]] = value


def merged(base: dict, child: dict) -> dict:
    """`child` over `base`: sections and mappings merge key by key, anything else (lists too) replaces."""
    out = dict(base)
    for key, value in child.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """A config file with its `base:` chain resolved (a path relative to the file): a paper recipe
    states only what differs from its paper's common settings."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (base of {chain[-1]})" if chain else ""))
    try:
        data: Any = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = data.pop("base", None)
    if base is None:
        return data
    parent = (path.parent / str(base)).resolve()
    if parent in chain or parent == path.resolve():
        raise ConfigError(f"{path}: base {base} makes a cycle")
    return merged(read_yaml(parent, (*chain, path.resolve())), data)


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    path = Path(path)
    data = read_yaml(path)
    for override in overrides:
        apply_override(data, override)
    for (section, key), new in MOVED_KEYS.items():
        if isinstance(data.get(section), dict) and key in data[section]:
            raise ConfigError(f"{path}: {section}.{key} has moved: set {new} instead")
    problem = raw_problem(TrainConfig, data)  # booleans as numbers, non-finite numbers anywhere
    if problem:
        raise ConfigError(f"{path}: {problem}")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        if first["type"] == "extra_forbidden":  # a typo, most often: name the key it meant
            from vrft.orchestrator.config.describe import did_you_mean

            key = ".".join(str(p) for p in first["loc"] if not isinstance(p, int) and "[" not in str(p))
            meant = did_you_mean(key, TrainConfig)
            hint = f" — did you mean {meant}?" if meant else " (vrft config show CONFIG lists the keys)"
            raise ConfigError(f"{path}: unknown key {key}{hint}") from None
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        msg = first["msg"].removeprefix("Value error, ")
        named = msg.split(" ", 1)[0]  # a section's or the whole config's check names its key itself
        if "." in named and (not first["loc"] or named.startswith(f"{first['loc'][0]}.")):
            where = ""
        raise ConfigError(f"{path}: {where + ': ' if where else ''}{msg}{more}") from None
