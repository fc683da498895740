"""`vrft report RUN_DIR`: one self-contained HTML page of a run, finished or still going.

    reward and accuracy per task and per component      metrics.jsonl  reward/<task>/<component>
    evaluation between steps                             metrics.jsonl  eval/<benchmark>/<metric>
    time per phase per step (rollout/verify/learn/sync)  metrics.jsonl  time/*
    the reward-hacking alarms, against their thresholds  metrics.jsonl  alarms/<task>/*, config.yaml
    a gallery of recorded rollouts, boxes drawn          rollouts/step_*.parquet (rollout_log.py)

Plots are plotly figures with plotly.js inlined and images are data URIs, so the file opens with no
network. It only reads what the run writes atomically (whole parquet files; metrics.jsonl's last,
half-written line is skipped), so building it beside a running run is safe. `end_of_run` is what
`vrft train` prints when a run ends: a short table, and where the report and the records are.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import yaml

from vrft.orchestrator.config.thresholds import TWO_SIDED, AlarmThresholds, crossed
from vrft.orchestrator.observe.report_page import PAGE, SCRIPT, STYLE
from vrft.orchestrator.observe.rollout_log import load_records, read_history, rollouts_dir

PHASES = ("time/rollout", "time/verify", "time/learn", "time/sync", "time/eval")
SHARES = ("empty_answer", "multi_class", "format_only", "tags_in_answer", "full_image_boxes", "truncated")
RATIOS = ("box_count_ratio", "answer_length_drift")


def series(history: list[dict]) -> dict[str, dict[int, float]]:
    """metric → {step: value}; a step logged twice (a resume without truncation) keeps its last."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for record in history:
        for key, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "step":
                out[key][int(record["step"])] = float(value)
    return out


def tasks_of(metrics: dict) -> list[str | None]:
    """The tasks the run logged per-task rewards for (three-part keys), else [None]."""
    tasks = sorted({k.split("/")[1] for k in metrics if k.startswith("reward/") and k.count("/") == 2})
    return tasks or [None]


def _figure(title: str, height: int = 320):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title={"text": title, "font": {"size": 14}}, height=height, template="plotly_white",
                      margin={"l": 50, "r": 20, "t": 40, "b": 40}, hovermode="x unified",
                      legend={"font": {"size": 11}}, xaxis_title="step")
    return fig


def _line(fig, name: str, points: dict[int, float], **kw) -> None:
    import plotly.graph_objects as go

    steps = sorted(points)
    fig.add_trace(go.Scatter(x=steps, y=[points[s] for s in steps], name=name,
                             mode="lines+markers" if len(steps) < 30 else "lines", **kw))


def reward_figures(metrics: dict) -> list:
    if not any(k.startswith("reward/") for k in metrics):
        return []  # nothing logged yet: no empty axes
    figs = []
    for task in tasks_of(metrics):
        prefix = f"reward/{task}/" if task else "reward/"
        keys = sorted(k for k in metrics if k.startswith(prefix) and k.count("/") == prefix.count("/"))
        fig = _figure(f"reward components: {task or 'all rows'}")
        for key in keys:
            _line(fig, key[len(prefix):], metrics[key])
        figs.append(fig)
    fig = _figure("accuracy per task")
    for task in tasks_of(metrics):
        key = f"reward/{task}/accuracy" if task else "reward/accuracy"
        if key in metrics:
            _line(fig, task or "all rows", metrics[key])
    if "reward/accuracy" in metrics and tasks_of(metrics) != [None]:
        _line(fig, "all rows", metrics["reward/accuracy"], line={"dash": "dot"})
    return [fig, *figs]


def eval_figures(metrics: dict) -> list:
    by_bench: dict[str, list[str]] = defaultdict(list)
    for key in sorted(k for k in metrics if k.startswith("eval/") and k.count("/") >= 2
                      and not k.endswith(("_ci_low", "_ci_high"))):
        by_bench[key.split("/")[1]].append(key)
    figs = []
    for bench, keys in by_bench.items():
        fig = _figure(f"evaluation: {bench}")
        for key in keys:
            name = key.split("/", 2)[2]
            if key + "_ci_low" in metrics and key + "_ci_high" in metrics:  # its 95% interval, dotted
                for end in ("_ci_low", "_ci_high"):
                    _line(fig, f"{name} 95% interval", metrics[key + end], showlegend=end == "_ci_low",
                          legendgroup=name, line={"dash": "dot", "width": 1})
            _line(fig, name, metrics[key], legendgroup=name)
        figs.append(fig)
    return figs


def time_figure(metrics: dict):
    import plotly.graph_objects as go

    fig = _figure("seconds per step, by phase")
    fig.update_layout(barmode="stack")
    for key in PHASES:
        if key in metrics:
            steps = sorted(metrics[key])
            fig.add_trace(go.Bar(x=steps, y=[metrics[key][s] for s in steps], name=key.split("/")[1]))
    return fig


def alarm_figures(metrics: dict, thresholds: AlarmThresholds) -> list:
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly
    figs = []
    for task in tasks_of(metrics):
        prefix = f"alarms/{task}/" if task else "alarms/"
        names = [n for n in (*SHARES, *RATIOS) if prefix + n in metrics]
        if not names:
            continue
        fig = _figure(f"alarms: {task or 'all rows'} (dashed: warning thresholds)")
        fig.update_layout(yaxis={"title": "share"},
                          yaxis2={"title": "ratio", "overlaying": "y", "side": "right"})
        for i, name in enumerate(names):
            colour = palette[i % len(palette)]
            axis = "y2" if name in RATIOS else "y"
            _line(fig, name, metrics[prefix + name], line={"color": colour}, yaxis=axis)
            limit = getattr(thresholds, name, None)
            if limit is not None:
                for y in ([limit, 1 / limit] if name in TWO_SIDED else [limit]):
                    steps = sorted(metrics[prefix + name])
                    _line(fig, f"{name} threshold", {steps[0]: y, steps[-1]: y}, yaxis=axis, showlegend=False,
                          line={"color": colour, "dash": "dash", "width": 1}, hoverinfo="skip")
        figs.append(fig)
    return figs


def alarm_table(metrics: dict, thresholds: AlarmThresholds) -> str:
    """The latest value of every alarm per task; a crossed threshold in red."""
    rows = []
    names = [*SHARES, *RATIOS]
    for task in tasks_of(metrics):
        prefix = f"alarms/{task}/" if task else "alarms/"
        cells = []
        for name in names:
            points = metrics.get(prefix + name)
            if not points:
                cells.append("<td>–</td>")
                continue
            value = points[max(points)]
            hot = crossed(name, value, getattr(thresholds, name, None))
            cells.append(f'<td class="{"crossed" if hot else ""}">{value:.3f}</td>')
        if any(c != "<td>–</td>" for c in cells):
            rows.append(f"<tr><td>{html.escape(task or 'all rows')}</td>{''.join(cells)}</tr>")
    if not rows:
        return '<p class="empty">No alarms logged yet.</p>'
    head = "".join(f"<th>{n}<br><small>warn {_limit(thresholds, n)}</small></th>" for n in names)
    return f'<table class="alarms"><tr><th>task (last step)</th>{head}</tr>{"".join(rows)}</table>'


def _limit(thresholds: AlarmThresholds, name: str) -> str:
    value = getattr(thresholds, name, None)
    if value is None:
        return "off"
    return f"&gt;{value:g} or &lt;{1 / value:.2g}" if name in TWO_SIDED else f"&gt;{value:g}"


def _data_uri(data: bytes | None) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode() if data else ""


def _card(row: dict, order: int, run_dir: Path) -> str:
    """One completion: its image (boxes drawn, else the thumbnail), scores, text, prompt."""
    boxed = row.get("boxes_image")
    path = rollouts_dir(run_dir) / boxed if isinstance(boxed, str) else None
    image = _data_uri(path.read_bytes() if path is not None and path.is_file() else row.get("thumbnail"))
    scores = "".join(f"<span>{html.escape(k[6:])} {v:.3f}</span>" for k, v in sorted(row.items())
                     if k.startswith("score/") and k != "score/total" and v == v)  # v == v: not NaN
    task = html.escape(row["task"] if isinstance(row.get("task"), str) else "")  # None or NaN: no task
    row_id = html.escape(str(row["row_id"]))
    return (
        f'<div class="card" data-task="{task}" data-step="{row["step"]}" data-reward="{row["reward"]:.6g}" '
        f'data-advantage="{row["advantage"]:.6g}" data-order="{order}" data-boxes="{int(path is not None)}">'
        + (f'<img alt="row {row_id}" src="{image}">' if image else "")
        + f'<div class="head"><span>step {row["step"]} · {task or "—"} · row {row_id} · '
        f'#{row["index"]}</span>'
        f'<span class="reward">reward {row["reward"]:.3f}</span></div>'
        f'<div class="scores">{scores}<span>advantage {row["advantage"]:+.3f}</span>'
        f'<span>{row["completion_tokens"]} tokens, {html.escape(str(row["finish_reason"]))}</span>'
        f'<span>policy v{row["policy_version"]}</span></div>'
        f'<pre>{html.escape(row["completion"])}</pre>'
        + _turns(row.get("turns"), run_dir)
        + f'<details><summary>prompt and ground truth</summary><pre>{html.escape(row["prompt"])}</pre>'
        f'<pre>{html.escape(row["ground_truth"])}</pre></details></div>')


def _turns(turns_json, run_dir: Path) -> str:
    """A multi-turn completion's turns, in order: the model's text, its tool call and the observation;
    where a tool showed a new view, the view the model looked at with the chosen region drawn, then
    the new view."""
    if not isinstance(turns_json, str):
        return ""
    parts = []
    for t, turn in enumerate(json.loads(turns_json)):
        pictures = "".join(
            f'<img class="turn" alt="turn {t} {key.split("_")[0]}" src="{_data_uri(path.read_bytes())}">'
            for key in ("look_image", "view_image")
            if isinstance(turn.get(key), str) and (path := rollouts_dir(run_dir) / turn[key]).is_file())
        called = f' → {html.escape(turn["tool"] or "a malformed call")}' if turn.get("call") is not None else ""
        result = turn.get("observation")
        parts.append(f'<div class="turn"><span>turn {t + 1}{called}</span><pre>{html.escape(turn["text"])}</pre>'
                     + (f'<pre class="observation">{html.escape(result)}</pre>' if result else "")
                     + pictures + "</div>")
    return f'<details open><summary>{len(parts)} turns</summary>{"".join(parts)}</details>'


def _options(values) -> str:
    return "".join(f'<option value="{html.escape(str(v))}">{html.escape(str(v))}</option>' for v in values)


def _filters(df) -> str:
    low, high = df["reward"].min(), df["reward"].max()
    sorts = {"newest": "newest", "reward-desc": "reward ↓", "reward-asc": "reward ↑",
             "advantage-desc": "advantage ↓", "advantage-asc": "advantage ↑"}
    return (
        '<div class="filters">'
        f'<label>task <select id="f-task"><option value="">all</option>'
        f'{_options(sorted(set(df["task"].dropna())))}</select></label>'
        f'<label>step <select id="f-step"><option value="">all</option>'
        f'{_options(sorted(set(df["step"]), reverse=True))}</select></label>'
        f'<label>reward from <input id="f-min" type="number" step="any" value="{low:.4g}" size="6"></label>'
        f'<label>to <input id="f-max" type="number" step="any" value="{high:.4g}" size="6"></label>'
        '<label><input id="f-boxes" type="checkbox"> with boxes only</label>'
        '<label>sort <select id="f-sort">'
        + "".join(f'<option value="{k}">{v}</option>' for k, v in sorts.items())
        + '</select></label><span id="f-count"></span>'
        '<span>boxes: <span class="legend-box" style="border-color:#22c55e"></span>ground truth'
        '<span class="legend-box" style="border-color:#ef4444"></span>prediction (confidence)</span></div>')


def gallery(run_dir: Path, max_rollouts: int) -> str:
    """Cards of the most recent recorded completions, filterable by task, step and reward."""
    df = load_records(run_dir)
    if df.empty:
        return '<p class="empty">No rollout records yet (logging.rollouts_every).</p>'
    df = df.sort_values(["step", "group", "index"], ascending=[False, True, True]).head(max_rollouts)
    cards = [_card(row, order, run_dir) for order, row in enumerate(df.to_dict("records"))]
    return _filters(df) + f'<div class="gallery">{"".join(cards)}</div>'


def _plots(figs: list, start: int) -> str:
    import plotly.io as pio

    if not figs:
        return '<p class="empty">Nothing logged yet.</p>'
    for fig in figs:  # steps are integers: no 1.5 ticks on a short run
        xs = [x for trace in fig.data for x in (trace.x or [])]
        if xs and max(xs) - min(xs) <= 10:
            fig.update_xaxes(dtick=1)
    divs = [pio.to_html(f, full_html=False, include_plotlyjs=False, div_id=f"plot{start + i}",
                        config={"displaylogo": False, "responsive": True}) for i, f in enumerate(figs)]
    return '<div class="plots">' + "".join(f'<div class="plot">{d}</div>' for d in divs) + "</div>"


def _config(run_dir: Path) -> dict:
    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def report_html(run_dir: Path, max_rollouts: int = 200) -> str:
    from plotly.offline import get_plotlyjs

    run_dir = Path(run_dir)
    cfg = _config(run_dir)
    try:
        thresholds = AlarmThresholds.model_validate((cfg.get("logging") or {}).get("alarms") or {})
    except ValueError:
        thresholds = AlarmThresholds()
    history = read_history(run_dir)
    metrics = series(history)
    steps = [r["step"] for r in history if "reward/mean" in r]
    total = (cfg.get("run") or {}).get("steps", "?")
    done = _finished(run_dir)
    meta = " · ".join(html.escape(str(x)) for x in [
        run_dir.resolve(), f"model {(cfg.get('model') or {}).get('path', '?')}",
        f"step {max(steps) if steps else 0} of {total}" + ("" if done else " (in progress)"),
        f"written {time.strftime('%Y-%m-%d %H:%M:%S')}"])
    figs = [reward_figures(metrics), eval_figures(metrics), [time_figure(metrics)] if steps else [],
            alarm_figures(metrics, thresholds)]
    starts = [sum(len(f) for f in figs[:i]) for i in range(len(figs))]
    sections = [
        "<h2>Reward and accuracy</h2>" + _plots(figs[0], starts[0]),
        "<h2>Evaluation</h2>" + (_plots(figs[1], starts[1]) if figs[1] else
                                 '<p class="empty">No eval/* metrics logged (eval: in the config).</p>'),
        "<h2>Time per phase</h2>" + _plots(figs[2], starts[2]),
        "<h2>Reward-hacking alarms</h2>" + alarm_table(metrics, thresholds)
        + (_plots(figs[3], starts[3]) if figs[3] else ""),
        f"<h2>Rollouts (the latest {max_rollouts} recorded completions)</h2>"
        + gallery(run_dir, max_rollouts),
    ]
    title = f"vrft run report: {(cfg.get('run') or {}).get('name', run_dir.name)}"
    return PAGE.format(title=html.escape(title), meta=meta, style=STYLE, plotlyjs=get_plotlyjs(),
                       sections="\n".join(sections), script=SCRIPT)


def _finished(run_dir: Path) -> bool:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return False
    lines = path.read_text().splitlines()
    return bool(lines) and '"summary": true' in lines[-1]


def build_report(run_dir: Path, out: Path | None = None, max_rollouts: int = 200) -> Path:
    """Write the report (default RUN_DIR/report.html) atomically; returns its path."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report.html"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(report_html(run_dir, max_rollouts), encoding="utf-8")
    os.replace(tmp, out)
    return out
