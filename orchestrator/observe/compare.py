"""`vrft report RUN_DIR RUN_DIR …`: runs side by side on one self-contained page.

    reward per task and component, one line per run        metrics.jsonl  reward/<task>/<component>
    evaluation per benchmark and metric, one line per run  metrics.jsonl  eval/<benchmark>/<metric>
    the SFT loss, one line per run                         metrics.jsonl  sft/loss
    a table: each run's final rewards and eval numbers     (with their 95% intervals where logged:
                                                            eval/<benchmark>/<metric>_ci_low/_ci_high)
    the config keys whose values differ between the runs   config.yaml

The page is the single-run report's (report_page.py): plotly.js inlined, nothing fetched.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path

from vrft.orchestrator.observe.report import _config, _figure, _line, _plots, series, tasks_of
from vrft.orchestrator.observe.report_page import PAGE, SCRIPT, STYLE
from vrft.orchestrator.observe.rollout_log import read_history

LAST = 5  # steps a final reward is averaged over (as the end-of-run summary)
CI = ("_ci_low", "_ci_high")
COMPARE_STYLE = """
table.compare { border-collapse: collapse; background: white; font-size: 13px; margin-bottom: 8px; }
table.compare th, table.compare td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; }
table.compare th:first-child, table.compare td:first-child { text-align: left; }
table.compare td.ci { color: var(--muted); }
table.compare td.differs { background: #fffbeb; }
"""


def run_label(run_dir: Path, taken: set[str]) -> str:
    """The run's name on the page: its folder's name, its parent's too when two runs share one."""
    label = run_dir.name
    if label in taken:
        label = f"{run_dir.parent.name}/{run_dir.name}"
    taken.add(label)
    return label


def sft_series(run_dir: Path) -> dict[int, float]:
    """sft/loss by SFT step (read_history keeps GRPO records only)."""
    path = run_dir / "metrics.jsonl"
    out: dict[int, float] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a running run's half-written last line
            continue
        if isinstance(record, dict) and "sft_step" in record and "sft/loss" in record:
            out[int(record["sft_step"])] = float(record["sft/loss"])
    return out


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """`section.key -> value` of a config's leaves (lists and their items kept whole)."""
    out: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


_ABSENT = object()


def config_differences(configs: list[dict]) -> dict[str, list[object]]:
    """Keys whose value is not the same in every run (a key a run lacks counts as different), each
    with the runs' values in order (`_ABSENT` where a run lacks it). The run's name is left out: it
    differs by design."""
    flat = [flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f} - {"run.name"})
    out = {}
    for key in keys:
        values = [f.get(key, _ABSENT) for f in flat]
        if any(v != values[0] for v in values[1:]):
            out[key] = values
    return out


def final_numbers(metrics: dict[str, dict[int, float]]) -> dict[str, tuple[float, float | None, float | None]]:
    """What the table shows per run: each task's reward mean and accuracy over its last LAST steps,
    and each eval metric's last value, with its interval where the run logged one."""
    out: dict[str, tuple[float, float | None, float | None]] = {}
    for task in tasks_of(metrics):
        prefix = f"reward/{task}/" if task else "reward/"
        for name in ("mean", "accuracy"):
            points = metrics.get(prefix + name)
            if points:
                last = [points[s] for s in sorted(points)[-LAST:]]
                out[f"{prefix}{name} (last {len(last)})"] = (sum(last) / len(last), None, None)
    for key in sorted(k for k in metrics if k.startswith("eval/") and k.count("/") >= 2):
        if key.endswith(CI) or key.endswith("/seconds"):
            continue
        step = max(metrics[key])
        low, high = (metrics.get(key + s, {}).get(step) for s in CI)
        out[f"{key} (step {step})"] = (metrics[key][step], low, high)
    return out


def _cell(value: tuple[float, float | None, float | None] | None) -> str:
    if value is None:
        return "<td>–</td>"
    number, low, high = value
    interval = f" <span class=\"ci\">[{low:.4g}, {high:.4g}]</span>" if low is not None and high is not None else ""
    return f"<td>{number:.4f}{interval}</td>"


def numbers_table(labels: list[str], finals: list[dict]) -> str:
    rows = sorted({k for f in finals for k in f})
    if not rows:
        return '<p class="empty">No rewards or eval metrics logged yet.</p>'
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    body = "".join(f"<tr><td>{html.escape(row)}</td>{''.join(_cell(f.get(row)) for f in finals)}</tr>"
                   for row in rows)
    return (f'<table class="compare"><tr><th>metric</th>{head}</tr>{body}</table>'
            '<p class="empty">Eval numbers: the last evaluation, with its 95% bootstrap interval where the run '
            'logged one.</p>')


def _shown(value: object) -> str:
    return "(not set)" if value is _ABSENT else html.escape(json.dumps(value) if not isinstance(value, str)
                                                           else value)


def config_table(labels: list[str], differences: dict[str, list[object]]) -> str:
    if not differences:
        return '<p class="empty">The runs\' configs are the same (but for run.name).</p>'
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    body = "".join(f"<tr><td>{html.escape(key)}</td>"
                   + "".join(f'<td class="differs">{_shown(v)}</td>' for v in values) + "</tr>"
                   for key, values in differences.items())
    return f'<table class="compare"><tr><th>config key</th>{head}</tr>{body}</table>'


def overlay_figures(labels: list[str], all_metrics: list[dict], sft: list[dict[int, float]]) -> list:
    """One figure per task and reward component, and per eval metric, each with a line per run."""
    keys = sorted({k for m in all_metrics for k in m
                   if (k.startswith("reward/") or (k.startswith("eval/") and k.count("/") >= 2))
                   and not k.endswith(CI) and not k.endswith("/seconds")})
    figs = []
    for key in keys:
        fig = _figure(key)
        for label, metrics in zip(labels, all_metrics, strict=True):
            if key in metrics:
                _line(fig, label, metrics[key])
        figs.append(fig)
    if any(sft):
        fig = _figure("sft/loss")
        fig.update_layout(xaxis_title="sft step")
        for label, points in zip(labels, sft, strict=True):
            if points:
                _line(fig, label, points)
        figs.append(fig)
    return figs


def compare_html(run_dirs: list[Path]) -> str:
    from plotly.offline import get_plotlyjs

    run_dirs = [Path(d) for d in run_dirs]
    taken: set[str] = set()
    labels = [run_label(d, taken) for d in run_dirs]
    all_metrics = [series(read_history(d)) for d in run_dirs]
    finals = [final_numbers(m) for m in all_metrics]
    differences = config_differences([_config(d) for d in run_dirs])
    figs = overlay_figures(labels, all_metrics, [sft_series(d) for d in run_dirs])
    meta = " · ".join(html.escape(str(x)) for x in [
        *[f"{label}: {d.resolve()}" for label, d in zip(labels, run_dirs, strict=True)],
        f"written {time.strftime('%Y-%m-%d %H:%M:%S')}"])
    sections = [
        "<h2>Final numbers</h2>" + numbers_table(labels, finals),
        f"<h2>Config differences ({len(differences)} keys)</h2>" + config_table(labels, differences),
        "<h2>Curves, one line per run</h2>" + _plots(figs, 0),
    ]
    return PAGE.format(title=html.escape(f"vrft runs compared: {', '.join(labels)}"), meta=meta,
                       style=STYLE + COMPARE_STYLE, plotlyjs=get_plotlyjs(), sections="\n".join(sections),
                       script=SCRIPT)


def default_compare_path(run_dirs: list[Path]) -> Path:
    """Beside the first run: compare-<run>-<run>….html (the names cut to a sane length)."""
    first = Path(run_dirs[0])
    name = "-".join(Path(d).name for d in run_dirs)[:120]
    return first.parent / f"compare-{name}.html"


def build_comparison(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Write the comparison page atomically; returns its path."""
    out = Path(out) if out else default_compare_path(run_dirs)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(compare_html(run_dirs), encoding="utf-8")
    os.replace(tmp, out)
    return out

