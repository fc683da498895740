"""Rollout records, alarms and the report on a real short run (local Ray, tiny model, detection +
classification + counting rows): the records hold what the verifiers scored and the learner trained
on, a resume neither duplicates nor loses them, and the report opens in a real headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.observe.rollout_log import load_records, read_history, step_file

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"
STEPS = 3


@pytest.fixture(scope="module")
def run(ray_cluster, tiny_model, tmp_path_factory):
    """Three recorded steps of mixed tasks; every learner batch's advantages captured as trained, and
    every wandb Table as logged."""
    import vrft.orchestrator.observe.rollout_log as rollout_log
    import vrft.orchestrator.train.step as step_module
    from vrft.orchestrator.train.loop import train
    from vrft.testing.released import make_mixed

    tmp = tmp_path_factory.mktemp("observability")
    data = make_mixed(tmp / "data", n=2, seed=0)
    overrides = [f"model.path={tiny_model}", f"data.path={data}", "data.task=null", "data.prompts_per_step=3",
                 "rollout.num_workers=1", "rollout.prompts_per_call=3", "verifier.num_actors=1",
                 f"run.steps={STEPS}", "run.save_every=1", "logging.rollouts_every=1",
                 "logging.rollouts_per_step=8"]
    cfg = load_config(CONFIG, overrides)
    batches: list[list[float]] = []
    tables: list = []
    record_advantages, log_table = step_module.record_advantages, rollout_log.log_wandb_table

    def capture(groups, batch):
        record_advantages(groups, batch)
        batches.append([s.advantage for s in batch.samples])

    class Run:  # the real offline wandb run, its logged payloads kept
        def __init__(self, run):
            self.run = run

        def log(self, payload):
            tables.append(payload["rollouts/samples"])
            self.run.log(payload)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(step_module, "record_advantages", capture)
        mp.setattr(rollout_log, "log_wandb_table", lambda run, step, rows: log_table(Run(run), step, rows))
        train(cfg, tmp / "run")
    return cfg, tmp / "run", batches, tables


def test_records_hold_the_verifiers_scores_and_the_learners_advantages(run):
    from vrft.orchestrator.core.tasks import reward_routes
    from vrft.verifiers import CompositeReward

    cfg, run_dir, batches, tables = run
    df = load_records(run_dir)
    assert sorted(df["step"].unique()) == list(range(1, STEPS + 1))
    assert len(df) == STEPS * 3 * cfg.rollout.n  # every group of every step, each with its n completions
    assert set(df["task"]) <= {"detection", "classification", "counting"} and df["task"].nunique() >= 2
    composites = {t: CompositeReward(specs) for t, specs in reward_routes([], set(df["task"])).items()}
    for row in df.to_dict("records"):
        expected = composites[row["task"]](row["completion"], json.loads(row["ground_truth"]))
        recorded = {k[len("score/"):]: v for k, v in row.items() if k.startswith("score/") and v == v}
        assert recorded == pytest.approx(expected, abs=1e-9), row["task"]
        assert row["finish_reason"] in ("stop", "length") and 0 < row["completion_tokens"] <= 16
        assert row["policy_version"] == row["step"] - 1 and row["thumbnail"][:2] == b"\xff\xd8"
        assert ("<|image_pad|>×" in row["prompt"]) and row["kept"]
    for step, advantages in enumerate(batches, start=1):  # records in batch order: group, completion
        rows = df[df["step"] == step].sort_values(["group", "index"])
        assert rows["advantage"].tolist() == pytest.approx(advantages, abs=0)
    det = df[df["task"] == "detection"]
    assert all((run_dir / "rollouts" / p).is_file() for p in det["boxes_image"])
    assert det["gt_boxes"].map(len).sum() > 0
    # The step's metrics: its alarms per task, and a reward mean the records reproduce.
    special = {"detection": "full_image_boxes", "classification": "multi_class", "counting": "empty_answer"}
    for record in read_history(run_dir):
        for task in set(df[df["step"] == record["step"]]["task"]):
            assert {f"alarms/{task}/{special[task]}", f"alarms/{task}/truncated"} <= record.keys()
        assert df[df["step"] == record["step"]]["score/total"].mean() == pytest.approx(record["reward/mean"])
    # The same records as wandb Tables, logged to the (offline) run; detection images carry both box
    # groups, so wandb's overlay can toggle them (wandb keeps them in Image._boxes).
    import wandb

    assert [len(t.data) for t in tables] == [len(df[df["step"] == s]) for s in range(1, STEPS + 1)]
    cells = [(row[2], row[3]) for t in tables for row in t.data]
    assert all(isinstance(image, wandb.Image) for _, image in cells)
    boxed = [image for task, image in cells if task == "detection"]
    assert boxed and all(set(image._boxes) == {"ground_truth", "predictions"} for image in boxed)


def test_a_resumed_run_neither_duplicates_nor_loses_records(run, tmp_path):
    """A kill after step 3's records were written but before its checkpoint: the resume goes back to
    step 2's checkpoint, makes step 3's records again (once) and adds step 4's."""
    from vrft.orchestrator.train.loop import train

    _, first_dir, _, _ = run
    run_dir = tmp_path / "run"
    shutil.copytree(first_dir, run_dir, ignore=shutil.ignore_patterns("wandb"))
    before = {s: step_file(run_dir, s).read_bytes() for s in (1, 2)}
    shutil.rmtree(run_dir / "checkpoints" / "step_000003")
    (run_dir / "checkpoints" / "latest").write_text("step_000002")
    more = load_config(run_dir / "config.yaml", [f"run.steps={STEPS + 1}"])
    train(more, run_dir, resume=True)
    files = sorted(p.name for p in (run_dir / "rollouts").glob("step_*.parquet"))
    assert files == [f"step_{s:06d}.parquet" for s in range(1, STEPS + 2)]
    assert {s: step_file(run_dir, s).read_bytes() for s in (1, 2)} == before  # not lost, not rewritten
    df = load_records(run_dir)
    history = read_history(run_dir)
    assert [r["step"] for r in history] == list(range(1, STEPS + 2))
    for record in history:
        rows = df[df["step"] == record["step"]]
        assert len(rows) == 3 * more.rollout.n and not rows.duplicated(["group", "index"]).any()
        assert rows["score/total"].mean() == pytest.approx(record["reward/mean"])


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    """Debian's chromium, headless (installed by `make browser`); its console goes to stderr."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make browser` installs it")
        pytest.skip("chromium is not installed (make browser)")
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp / 'profile'}", "--window-size=1400,2400",
                           "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", *args],
                          capture_output=True, text=True, timeout=180)


def rendered(dom: str) -> dict[str, str]:
    """What the page's script recorded on <body> (report_page.SCRIPT)."""
    body = re.search(r"<body([^>]*)>", dom).group(1)
    return dict(re.findall(r'data-(\w+)="([^"]*)"', body))


def test_the_report_renders_in_a_headless_browser(run, tmp_path):
    from vrft.orchestrator.observe.report import build_report

    _, run_dir, _, _ = run
    report = build_report(run_dir, tmp_path / "report.html")
    page = report.read_text()
    # Self-contained: no external script, stylesheet or image; plotly.js is inside.
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=\"(https?:)?//", page)
    figures = page.count('class="plotly-graph-div"')
    records = len(load_records(run_dir))
    assert figures >= 8 and 'data-task="detection"' in page  # rewards, accuracy, time, alarms per task

    url = report.resolve().as_uri()
    shown = chromium("--dump-dom", url, tmp=tmp_path)
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert shown.returncode == 0 and not console, console
    state = rendered(shown.stdout)
    assert state == {"plots": str(figures), "cards": str(records), "errors": ""}, state

    # The gallery's filters, set from the address: only detection completions remain.
    detection = int((load_records(run_dir)["task"] == "detection").sum())
    filtered = chromium("--dump-dom", url + "#task=detection&boxes=1", tmp=tmp_path)
    assert rendered(filtered.stdout)["cards"] == str(detection) and detection > 0

    shot = chromium(f"--screenshot={tmp_path / 'report.png'}", url, tmp=tmp_path)
    assert shot.returncode == 0 and (tmp_path / "report.png").stat().st_size > 20_000
