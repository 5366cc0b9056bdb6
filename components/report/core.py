"""report core: one HTML page a person reads after a run: the DAG with each stage's status and
time, the loss curves, the confusion matrix, the model table with the chosen model, its return on
investment (select's decision.json ``roi`` block), the drift verdicts, and links to the Evidently
reports and the model card.

Contract: ``run(params, output, ingest=..., clean=..., ..., monitor=...)``: each stage argument is
that stage's output folder (a path or URI; None or missing = not part of this run). Writes into
``output`` (atomically):

- ``report.html`` (``artifacts.REPORT_HTML``): one self-contained page: inline SVG and CSS, no script and nothing fetched, so
  it opens offline, from a file, in the Kubeflow UI's HTML viewer (the KFP component publishes it
  as the last step's HTML artifact) or attached to a mail;
- ``metrics.json``: ``stages`` (in the DAG), ``stages_recorded`` (with a run record),
  ``seconds_recorded`` (their wall-clock seconds summed), ``drifted_batches``.

Each stage's status and time come from the ``run.json`` the one stage entry writes into its output
once it has succeeded (``components.common.entry.RUN_RECORD``); the DAG's edges from the
arguments each stage recorded: stage B reads stage A's output when one of B's arguments is A's
recorded output or lies inside it. So both orchestrators draw the DAG they actually ran. A stage
whose output has no run record (DVC restored it from its cache, or it ran before records
existed) is shown as "no run record", without edges.

Links to other outputs (the Evidently reports, the model card) are relative to ``output``: they
open from ``outputs/report/report.html`` under DVC. On Kubeflow the same pages are the monitor
step's HTML artifact and the select step's artifact; the model card is also inlined here.

Wall-clock figures are wrapped in ``<span class="t">`` (``TIMED``) so two runs of the same inputs
give the same page once those are removed (the parity test does).
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.common import artifacts as a
from components.common.entry import RUN_RECORD
from components.common.io import atomic_output_dir, is_remote, open_uri, read_json
from components.common.metrics import write_metrics
from components.common.params import STAGES
from components.report.figures import drift_verdicts, duration, figures, number, verdict
from components.report.params import Params

log = logging.getLogger("report")

# The DAG drawn: every stage but this one.
DAG = tuple(s for s in STAGES if s != "report")
TIMED = "t"  # class of the elements that hold wall-clock figures
# The curves drawn: (stage, file, title, x column, y columns).
CURVES: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("pretrain", a.LOSS, "Pretraining loss (nats/token)", "step", ("train_loss", "valid_loss")),
    ("finetune", a.HISTORY, "Fine-tuning", "epoch", ("train_loss", "valid_loss", "valid_macro_f1")),
    (
        "sft",
        a.LOSS,
        "Supervised fine-tuning: response loss (nats/token)",
        "step",
        ("train_loss", "valid_loss"),
    ),
)
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.chosen td{background:#e8f5e9;font-weight:600}.drift{color:#b71c1c;font-weight:600}.ok{color:#1b5e20}
.muted{color:#777}svg{max-width:100%;height:auto}pre{background:#fafafa;padding:10px;overflow:auto}
.charts{display:flex;flex-wrap:wrap;gap:16px}
"""


def _t(text: str) -> str:
    return f'<span class="{TIMED}">{html.escape(text)}</span>'


def _exists(path: str) -> bool:
    if is_remote(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(path)
        return fs.exists(root)
    return os.path.exists(path)


def _json(folder: str | None, name: str) -> Any:
    """``folder/name`` as JSON, None when there is no such file."""
    if not folder:
        return None
    path = a.path(folder, name)
    return read_json(path) if _exists(path) else None


def _text(folder: str | None, name: str) -> str | None:
    if not folder:
        return None
    path = a.path(folder, name)
    if not _exists(path):
        return None
    with open_uri(path, "rt", encoding="utf-8") as f:
        return f.read()


def _inside(path: str, folder: str) -> bool:
    path, folder = path.rstrip("/"), folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def dag_edges(records: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(producer, consumer)`` pairs: the consumer recorded an argument that is the producer's
    recorded output or lies inside it. In DAG order."""
    edges = []
    for consumer in DAG:
        arguments = (records.get(consumer) or {}).get("arguments") or {}
        for producer in DAG:
            output = (records.get(producer) or {}).get("output")
            if producer == consumer or not output:
                continue
            values = [
                v for value in arguments.values() for v in (value if isinstance(value, list) else [value])
            ]
            if any(_inside(str(v), str(output)) for v in values):
                edges.append((producer, consumer))
    return edges


def layers(edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each stage's column: the length of the longest chain of edges that leads to it."""
    depth = dict.fromkeys(DAG, 0)
    for _ in DAG:  # at most len(DAG) rounds settle a DAG
        changed = False
        for producer, consumer in edges:
            if depth[consumer] < depth[producer] + 1:
                depth[consumer] = depth[producer] + 1
                changed = True
        if not changed:
            break
    return depth


def dag_svg(records: Mapping[str, Mapping[str, Any]], edges: Sequence[tuple[str, str]]) -> str:
    """The DAG as an SVG: a box per stage (name, time or "no run record"), a curve per edge."""
    depth = layers(edges)
    width, height, gap_x, gap_y = 120, 44, 36, 18
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for stage in DAG:
        column = depth[stage]
        row = rows.get(column, 0)
        rows[column] = row + 1
        place[stage] = (10 + column * (width + gap_x), 10 + row * (height + gap_y))
    total_w = 20 + (max(depth.values()) + 1) * (width + gap_x) - gap_x
    total_h = 20 + max(rows.values()) * (height + gap_y) - gap_y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {total_w} {total_h}" width="{total_w}" '
        f'height="{total_h}" role="img" aria-label="pipeline DAG">',
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#999"/></marker></defs>',
    ]
    for producer, consumer in edges:
        (x1, y1), (x2, y2) = place[producer], place[consumer]
        x1, y1, y2 = x1 + width, y1 + height / 2, y2 + height / 2
        bend = (x2 - x1) / 2
        parts.append(
            f'<path data-edge="{producer}-{consumer}" d="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}" fill="none" '
            f'stroke="#aaa" stroke-width="1.2" marker-end="url(#arrow)"/>'
        )
    for stage in DAG:
        x, y = place[stage]
        record = records.get(stage)
        fill, stroke, dash = (
            ("#e8f5e9", "#43a047", "") if record else ("#f5f5f5", "#999", ' stroke-dasharray="4 3"')
        )
        status = (
            f'<tspan class="{TIMED}">{html.escape(duration(record.get("seconds")))}</tspan>'
            if record
            else "no run record"
        )
        parts.append(
            f'<g class="stage" data-stage="{stage}"><rect x="{x}" y="{y}" width="{width}" height="{height}" '
            f'rx="6" fill="{fill}" stroke="{stroke}"{dash}/>'
            f'<text x="{x + width / 2}" y="{y + 18}" text-anchor="middle" font-weight="600">{stage}</text>'
            f'<text x="{x + width / 2}" y="{y + 35}" text-anchor="middle" font-size="12" fill="#555">'
            f"{status}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def read_curve(text: str, x: str, ys: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
    """The ``ys`` columns of a CSV against ``x``; empty cells and missing columns skipped."""
    series: dict[str, list[tuple[float, float]]] = {y: [] for y in ys}
    for row in csv.DictReader(io.StringIO(text)):
        try:
            xv = float(row[x])
        except (KeyError, TypeError, ValueError):
            continue
        for y in ys:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                series[y].append((xv, float(row[y])))
    return {y: points for y, points in series.items() if points}


def thin(points: Sequence[tuple[float, float]], most: int) -> list[tuple[float, float]]:
    """At most ``most`` points, evenly spaced over the curve, first and last kept."""
    if len(points) <= most:
        return list(points)
    step = (len(points) - 1) / (most - 1)
    return [points[round(i * step)] for i in range(most)]


def _tick(value: float) -> str:
    return f"{value:.3g}"


def line_chart(
    title: str, xlabel: str, series: Mapping[str, Sequence[tuple[float, float]]], most: int
) -> str:
    """An SVG line chart of ``series`` (name -> points), with axes, four ticks each and a legend."""
    w, h, left, right, top, bottom = 520, 270, 52, 12, 40, 40
    xs = [p[0] for s in series.values() for p in s]
    ys = [p[1] for s in series.values() for p in s]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1

    def sx(v: float) -> float:
        return round(left + (v - x0) / (x1 - x0) * (w - left - right), 1)

    def sy(v: float) -> float:
        return round(top + (y1 - v) / (y1 - y0) * (h - top - bottom), 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="16" font-weight="600">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#444"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#444"/>',
    ]
    for i in range(4):
        xv, yv = x0 + (x1 - x0) * i / 3, y0 + (y1 - y0) * i / 3
        parts.append(
            f'<text x="{sx(xv)}" y="{h - bottom + 14}" font-size="11" text-anchor="middle">{_tick(xv)}</text>'
        )
        parts.append(
            f'<text x="{left - 4}" y="{sy(yv) + 4}" font-size="11" text-anchor="end">{_tick(yv)}</text>'
        )
        parts.append(f'<line x1="{left}" y1="{sy(yv)}" x2="{w - right}" y2="{sy(yv)}" stroke="#eee"/>')
    parts.append(
        f'<text x="{(left + w - right) / 2}" y="{h - 6}" font-size="12" text-anchor="middle">{html.escape(xlabel)}</text>'
    )
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{sx(x)},{sy(y)}" for x, y in thin(points, most))
        parts.append(
            f'<polyline class="series" data-series="{html.escape(name)}" points="{path}" fill="none" '
            f'stroke="{colour}" stroke-width="1.6"/>'
        )
        lx = left + 10 + i * 130
        parts.append(f'<rect x="{lx}" y="{top - 13}" width="10" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="{top - 8}" font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], row_classes: Sequence[str] = ()) -> str:
    """An HTML table; cells are HTML already (escape before)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if i < len(row_classes) and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    rows_html = "\n".join(body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{rows_html}\n</tbody></table>"


def _finished(record: Mapping[str, Any]) -> str:
    try:
        return datetime.fromisoformat(record["finished_at"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (KeyError, TypeError, ValueError):
        return "?"


def stages_section(
    records: Mapping[str, Mapping[str, Any]],
    edges: Sequence[tuple[str, str]],
    metrics: Mapping[str, Any],
) -> str:
    reads = {s: [p for p, c in edges if c == s] for s in DAG}
    rows = []
    for stage in DAG:
        record = records.get(stage)
        m = metrics.get(stage)
        rows.append(
            [
                f"<b>{stage}</b>",
                "done" if record else '<span class="muted">no run record</span>',
                _t(_finished(record)) if record else "",
                _t(duration(record.get("seconds"))) if record else "",
                html.escape(", ".join(reads[stage])),
                html.escape(figures(stage, m))
                if m is not None
                else '<span class="muted">no metrics.json</span>',
            ]
        )
    return _table(["stage", "status", "finished", "time", "reads", "key figures"], rows)


def confusion_section(evaluation: Mapping[str, Any] | None) -> str:
    matrix = (evaluation or {}).get("confusion")
    if not isinstance(matrix, Mapping) or not matrix:
        return '<p class="muted">No confusion matrix (the evaluate stage has not run).</p>'
    labels = list(evaluation.get("labels") or sorted(matrix))
    peak = max((int(n) for row in matrix.values() for n in row.values()), default=1) or 1
    rows = []
    for actual in labels:
        cells = [f"<b>{html.escape(actual)}</b>"]
        for predicted in labels:
            n = int((matrix.get(actual) or {}).get(predicted, 0))
            shade = 255 - int(140 * n / peak)
            cells.append(f'<span style="display:block;background:rgb({shade},{shade},255)">{n:,}</span>')
        rows.append(cells)
    header = ["actual \\ predicted", *labels]
    return (
        _table(header, rows) + f'<p class="muted">Test split, {evaluation.get("examples", "?")} examples.</p>'
    )


def models_section(decision: Mapping[str, Any] | None) -> str:
    if not decision:
        return '<p class="muted">No model table (the select stage has not run).</p>'
    metric = decision.get("metric", "macro_f1")
    chosen = decision.get("chosen")
    rows, classes = [], []
    for row in decision.get("models", []):
        size = row.get("size_bytes")
        rows.append(
            [
                html.escape(str(row.get("model", "?"))),
                html.escape(str(row.get("variant", ""))),
                number(row.get(metric)),
                number(row.get("accuracy")),
                _t(number(row.get("latency_p95_ms"), "{:.1f}")),
                number(size / 1e6 if isinstance(size, int | float) else None, "{:.2f}"),
                html.escape(verdict(row, chosen)),
            ]
        )
        classes.append("chosen" if row.get("model") == chosen else "")
    text = (
        f"<p>Chosen: <b>{html.escape(str(chosen))}</b> by {html.escape(str(metric))}"
        + (f" ({html.escape(str(decision['objective']))})" if decision.get("objective") else "")
        + f". Gate: {html.escape(str(decision.get('gate', '')))}</p>"
    )
    header = ["model", "variant", metric, "accuracy", "p95 latency ms", "size MB", "verdict"]
    return text + _table(header, rows, classes)


def _usd(value: Any) -> str:
    """``$0.00123`` (4 significant digits: demo costs are fractions of a cent), wrapped as a timed
    figure (it comes from wall-clock time); ``-`` when unknown."""
    return _t(f"${value:.4g}") if isinstance(value, int | float) else "-"


def roi_section(decision: Mapping[str, Any] | None) -> str:
    """The chosen model's return on investment from decision.json's ``roi`` block (select): the
    training cost, the serving estimate, macro-F1 against the previous version and the baseline,
    and USD per macro-F1 point gained. Costs are timed figures (``_t``)."""
    roi = (decision or {}).get("roi")
    if not roi:
        return '<p class="muted">No return-on-investment figures (select wrote no roi block).</p>'
    t, s = roi.get("training_cost") or {}, roi.get("serving_cost") or {}
    q, p = roi.get("quality") or {}, roi.get("usd_per_macro_f1_point") or {}
    hours = t.get("accelerator_hours")
    price = (
        f"{t.get('period')} at ${t['usd_per_hour']:g}/h, priced at the pretrain run's start "
        f"({t.get('priced_at') or 'unknown: on-peak'})"
        if isinstance(t.get("usd_per_hour"), int | float)
        else "no prices"
    )
    serve = (
        f"estimated from evaluate's measurements at ${s['usd_per_hour']:g}/h; the live figures come from the monitor"
        if isinstance(s.get("usd_per_hour"), int | float)
        else "no prices"
    )
    costs = [
        [
            html.escape(f"training ({t.get('note', '')})"),
            _t(f"{hours:.4g}") if isinstance(hours, int | float) else "-",
            _usd(t.get("usd")),
            _t(price),
        ],
        [
            "serving per 1k requests (one review each)",
            "",
            _usd(s.get("usd_per_1k_requests")),
            html.escape(serve),
        ],
        [
            "serving per 1k reviews in batches",
            "",
            _usd(s.get("usd_per_1k_requests_batched")),
            html.escape(serve),
        ],
        ["serving per 1M tokens (one review each)", "", _usd(s.get("usd_per_1m_tokens")), html.escape(serve)],
        [
            "serving per 1M tokens in batches",
            "",
            _usd(s.get("usd_per_1m_tokens_batched")),
            html.escape(serve),
        ],
    ]
    compared = []
    for name, key in (("previous version", "previous"), ("baseline", "baseline")):
        other = q.get(key)
        if not other:
            reason = html.escape(str(q.get(f"{key}_reason", "")))
            compared.append([name, "-", "-", "-", f'<span class="muted">{reason}</span>'])
            continue
        label = str(other.get("model")) + (f" ({other['promoted_at']})" if other.get("promoted_at") else "")
        per = p.get(f"vs_{key}")
        compared.append(
            [
                name,
                html.escape(label),
                number(other.get("macro_f1"), "{:.4f}"),
                number(other.get("delta_points"), "{:+.2f}"),
                _usd(per)
                if per is not None
                else f'<span class="muted">{html.escape(str(p.get(f"vs_{key}_reason", "")))}</span>',
            ]
        )
    return (
        f"<p>Return on investment of <b>{html.escape(str(roi.get('model')))}</b> "
        f"(macro-F1 {number(q.get('macro_f1'), '{:.4f}')}).</p>"
        + _table(["cost", "accelerator-hours", "USD", "basis"], costs)
        + _table(
            ["compared with", "model", "macro-F1", "Δ macro-F1 (points)", "USD per point gained"], compared
        )
    )


def drift_section(monitor: str | None, metrics: Mapping[str, Any] | None, output: str) -> str:
    if not metrics:
        return '<p class="muted">No drift verdicts (the monitor stage has not run).</p>'
    batches = metrics.get("batches") or {}
    rows = []
    for name, text in drift_verdicts(metrics):
        b = batches.get(name) or {}
        cls = "drift" if text == "DRIFT" else "ok"
        link = _link(a.path(monitor, name, a.REPORT_HTML), output, "Evidently report") if monitor else ""
        rows.append(
            [
                html.escape(name),
                f'<span class="{cls}">{text}</span>',
                number(b.get("drift_share"), "{:.2f}"),
                f"{b.get('drifted_columns', '?')} of {b.get('columns', '?')}",
                f"{b.get('rows', '?')}",
                link,
            ]
        )
    alerts = metrics.get("alerts", 0)
    return (
        _table(["batch", "verdict", "drift share", "drifted columns", "rows", "report"], rows)
        + f"<p>Alerts: <b>{html.escape(str(alerts))}</b>.</p>"
    )


def _link(target: str, output: str, text: str) -> str:
    """A link to ``target`` relative to the report's folder (a URI stays absolute)."""
    href = target if is_remote(target) or is_remote(output) else os.path.relpath(target, output)
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def render(stages: Mapping[str, str | None], params: Params, output: str, now: datetime) -> tuple[str, dict]:
    """The page and the report's metrics, from the stages' output folders ``stages``."""
    records = {s: r for s in DAG if (r := _json(stages.get(s), RUN_RECORD)) is not None}
    metrics = {s: m for s in DAG if (m := _json(stages.get(s), a.METRICS)) is not None}
    edges = dag_edges(records)
    decision = _json(stages.get("select"), a.DECISION_JSON)
    release = _json(stages.get("deploy"), a.RELEASE)
    card = _text(stages.get("select"), a.MODEL_CARD)

    charts = []
    for stage, name, title, x, ys in CURVES:
        text = _text(stages.get(stage), name)
        series = read_curve(text, x, ys) if text else {}
        if series:
            charts.append(line_chart(title, x, series, params.curve_points))

    released = ""
    if release:
        dataset = (release.get("dataset") or {}).get("version", "?")
        released = (
            f"<p>Released: model <code>{html.escape(str(release.get('version')))}</code> "
            f"({html.escape(str(release.get('kind', 'gpt-classifier')))}), trained on dataset "
            f"<code>{html.escape(str(dataset)[:12])}</code>.</p>"
        )
    links = []
    if stages.get("select") and card is not None:
        links.append(_link(a.path(stages["select"], a.MODEL_CARD), output, "model card"))
    if stages.get("select"):
        links.append(_link(a.path(stages["select"], a.DECISION_MD), output, "decision.md"))
    if stages.get("evaluate"):
        links.append(_link(a.path(stages["evaluate"], a.TABLE), output, "evaluation table"))
    body = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Run report</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>Run report</h1>",
        f'<p class="muted">Written {_t(now.strftime("%Y-%m-%d %H:%M:%S UTC"))}. '
        f"Stages: {len(records)} of {len(DAG)} with a run record.</p>",
        released,
        '<h2 id="dag">Pipeline</h2>',
        dag_svg(records, edges),
        stages_section(records, edges, metrics),
        '<h2 id="curves">Training curves</h2>',
        f'<div class="charts">{"".join(charts)}</div>'
        if charts
        else '<p class="muted">No training curves yet.</p>',
        '<h2 id="confusion">Confusion matrix</h2>',
        confusion_section(metrics.get("evaluate")),
        '<h2 id="models">Models</h2>',
        models_section(decision),
        '<h2 id="roi">Return on investment</h2>',
        roi_section(decision),
        '<h2 id="drift">Drift</h2>',
        drift_section(stages.get("monitor"), metrics.get("monitor"), output),
        '<h2 id="card">Model card</h2>',
        f"<p>{' · '.join(links)}</p>" if links else "",
        f"<details open><summary>MODEL_CARD.md</summary><pre>{html.escape(card)}</pre></details>"
        if card
        else '<p class="muted">No model card (the select stage has not run).</p>',
        "</body></html>",
    ]
    summary = {
        "stages": len(DAG),
        "stages_recorded": len(records),
        "seconds_recorded": round(sum(float(r.get("seconds") or 0) for r in records.values()), 3),
        "drifted_batches": sum(v == "DRIFT" for _, v in drift_verdicts(metrics.get("monitor") or {})),
    }
    return "\n".join(part for part in body if part), summary


def run(params: Params, output: str, **stages: str | None) -> dict[str, Any]:
    """Write ``output/report.html`` and ``output/metrics.json`` from the stages' output folders
    ``stages`` (keyword per stage name, see the module doc); return the metrics."""
    unknown = sorted(set(stages) - set(DAG))
    if unknown:
        raise TypeError(f"report: unknown stage arguments {unknown} (stages: {', '.join(DAG)})")
    # Links are computed from where the page will lie, not from the temporary folder.
    page, summary = render(stages, params, str(output), datetime.now(UTC))
    with atomic_output_dir(output) as out:
        (Path(out) / a.REPORT_HTML).write_text(page, encoding="utf-8")
        metrics = write_metrics(out, summary)
    log.info(
        "report: %s (%d of %d stages with a run record)",
        a.path(output, a.REPORT_HTML),
        summary["stages_recorded"],
        summary["stages"],
    )
    return metrics
