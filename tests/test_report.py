"""The report and the end-of-run summary from a run folder written by hand (no Ray): a run still going
(its last metrics line half-written), eval metrics, the alarm table against the run's thresholds."""

from __future__ import annotations

import json

import yaml

from vrft.orchestrator.cli.report import run_summary
from vrft.orchestrator.observe.report import build_report, series, tasks_of


def write_run(run_dir, steps: int, finished: bool) -> None:
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({
        "run": {"name": "hand", "steps": 10}, "model": {"path": "m"},
        "logging": {"alarms": {"empty_answer": 0.5}}}))
    lines = [json.dumps({"step": 0, "eval/clevr_math/accuracy": 0.2})]
    for s in range(1, steps + 1):
        lines.append(json.dumps({
            "step": s, "reward/mean": s / 10, "reward/accuracy": s / 20, "policy_version": float(s),
            "reward/detection/mean": s / 10, "reward/detection/accuracy": s / 20,
            "reward/detection/format": 1.0,
            "reward/counting/mean": 0.5, "reward/counting/accuracy": 0.25,
            "alarms/detection/empty_answer": 0.6 if s == steps else 0.1, "alarms/detection/truncated": 0.0,
            "alarms/counting/empty_answer": 0.0,
            "time/rollout": 1.0, "time/verify": 0.1, "time/learn": 2.0, "time/sync": 0.2,
            **({"eval/clevr_math/accuracy": 0.3 + s / 100, "eval/clevr_math/accuracy_ci_low": 0.2 + s / 100,
                "eval/clevr_math/accuracy_ci_high": 0.4 + s / 100} if s % 2 == 0 else {})}))
    if finished:
        lines.append(json.dumps({"summary": True, "minutes": 1.0}))
    text = "\n".join(lines) + "\n"
    if not finished:
        text += '{"step": 99, "reward/me'  # a running run's line, half-written
    (run_dir / "metrics.jsonl").write_text(text)


def test_a_running_run_reports_what_it_has(tmp_path):
    run_dir = tmp_path / "run"
    write_run(run_dir, steps=4, finished=False)
    page = build_report(run_dir).read_text()
    assert "step 4 of 10 (in progress)" in page
    # accuracy + 2 tasks' components, one eval benchmark, the phases, 2 tasks' alarms
    assert page.count('class="plotly-graph-div"') == 3 + 1 + 1 + 2
    assert "accuracy 95% interval" in page and '"name":"accuracy_ci_low"' not in page  # dotted, beside it
    assert 'No rollout records yet' in page
    # the alarm table: the last step's value, red past the run's own threshold (0.5, not the default)
    assert '<td class="crossed">0.600</td>' in page and "warn &gt;0.5" in page

    metrics = series([json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()[:-1]])
    assert tasks_of(metrics) == ["counting", "detection"] and metrics["eval/clevr_math/accuracy"][0] == 0.2


def test_the_summary_names_the_best_eval_the_final_rewards_and_where_things_are(tmp_path):
    run_dir = tmp_path / "run"
    write_run(run_dir, steps=6, finished=True)
    report = build_report(run_dir)
    assert "(in progress)" not in report.read_text()
    text = run_summary(run_dir, report)
    assert "steps      6, policy version 6" in text
    # the interval beside its metric, never a metric of its own
    assert "best eval  eval/clevr_math/accuracy 0.3600 [0.2600, 0.4600] (step 6)" in text
    assert "_ci_" not in text
    # the last 5 steps' mean of reward/detection/mean: (0.2 + ... + 0.6) / 5
    assert any(line.split()[:3] == ["detection", "0.4000", "0.2000"] for line in text.splitlines())
    assert f"report     {report}" in text
