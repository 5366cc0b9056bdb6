"""What the continuous monitor's pages show: the ops report draws the latency histogram once and
prints costs at their own scale (not "0.000"); the workspace dashboard says "No labels yet" until a
quality snapshot arrives, then draws accuracy; a dashboard made by older code is replaced by the
declared one; the generation ops report draws its ms-per-token histogram once. (The dashboard as
Chromium shows it: tests/pages/test_evidently_ui.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from monitoring import reports
from monitoring.loop import ops_frame
from monitoring.settings import Settings
from monitoring.workspace import (
    NO_LABELS,
    QUALITY_TITLE,
    TAG_QUALITY,
    add_snapshots,
    dashboard_panels,
    model_project,
    open_workspace,
)

T0 = datetime(2026, 5, 1, 11, 0, tzinfo=UTC)


def _ops_rows(n: int = 120, latency: float = 20.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"latency_ms": [latency + i % 7 for i in range(n)], "compute_ms": [5.0] * n, "tokens": [30] * n}
    )


def _widgets(snapshot) -> list:
    return [(w.title, w.type, w.params) for w in snapshot.to_snapshot_model().widgets]


def test_the_ops_report_draws_latency_once_and_costs_at_their_scale():
    settings = Settings()
    current = ops_frame(_ops_rows(), settings.prices.serve_usd_per_hour)
    previous = ops_frame(_ops_rows(latency=30.0), settings.prices.serve_usd_per_hour)

    for before in (None, previous):
        widgets = _widgets(reports.run_ops_report(current, before, settings))
        latency_graphs = [t for t, kind, _ in widgets if kind == "big_graph" and "latency" in t.lower()]
        assert len(latency_graphs) == 1, widgets  # Evidently alone: one per mean, p50, p95, p99
        counters = {
            c["label"]: c["value"]
            for _, kind, params in widgets
            if kind == "counter"
            for c in params["counters"]
        }
        usd = float(current["usd"].sum())
        assert counters["USD in the window"] == f"{usd:.3g}" != "0.000"
        assert float(counters["USD per 1M predictions"]) == float(f"{usd / 120 * 1e6:.3g}")
        assert counters["p50"] == "23" and counters["tokens"] == "3,600"


def test_the_dashboard_says_no_labels_until_a_quality_snapshot_then_draws_accuracy(tmp_path):
    settings = Settings()
    ws = open_workspace(tmp_path / "workspace")
    ops = reports.run_ops_report(ops_frame(_ops_rows(), settings.prices.serve_usd_per_hour), None, settings)
    add_snapshots(ws, "v1", {"ops": ops}, run_name="window 1")
    project = model_project(ws, "v1")

    def quality_panel():
        (panel,) = [p for p in ws.get_dashboard(project.id).panels if p.title == QUALITY_TITLE]
        return panel

    assert quality_panel().plot_params["plot_type"] == "text" and quality_panel().subtitle == NO_LABELS

    labelled = pd.DataFrame({"label": ["positive", "negative"] * 30, "prediction": ["positive"] * 60})
    quality = reports.run_quality_report(labelled, labelled, ["negative", "positive"], timestamp=T0)
    add_snapshots(ws, "v1", {TAG_QUALITY: quality}, run_name="window 2")
    assert quality_panel().plot_params["plot_type"] == "bar"
    assert quality_panel().values[0].metric.endswith(":Accuracy")

    # A later window without labels keeps the accuracy history on the dashboard.
    add_snapshots(ws, "v1", {"ops": ops}, run_name="window 3")
    assert quality_panel().plot_params["plot_type"] == "bar"


def test_a_dashboard_made_by_older_code_is_replaced_by_the_declared_one(tmp_path):
    from evidently.sdk.panels import line_plot_panel

    settings = Settings()
    ws = open_workspace(tmp_path / "workspace")
    project = model_project(ws, "v1")
    project.dashboard.clear_dashboard()
    project.dashboard.add_panel(line_plot_panel(title="Cost: USD per window", values=[], size="half"))

    ops = reports.run_ops_report(ops_frame(_ops_rows(), settings.prices.serve_usd_per_hour), None, settings)
    add_snapshots(ws, "v1", {"ops": ops}, run_name="window 1")

    titles = [p.title for p in ws.get_dashboard(project.id).panels]
    assert titles == [p.title for p in dashboard_panels()]


def test_the_generation_ops_report_draws_ms_per_token_once():
    from monitoring.generations import GENERATION_OPS_COLUMNS, MS_PER_TOKEN, run_ops_report

    n = 60
    frame = pd.DataFrame({c: [0.0] * n for c in GENERATION_OPS_COLUMNS})
    frame[MS_PER_TOKEN] = [10.0 + i % 5 for i in range(n)]
    frame["tokens_out"] = 16.0
    frame["usd"] = 1e-7
    frame["usd_per_1m_tokens"] = 0.1

    widgets = _widgets(run_ops_report(frame))

    assert [kind for _, kind, _ in widgets].count("big_graph") == 1
    counters = {c["label"]: c["value"] for _, kind, p in widgets if kind == "counter" for c in p["counters"]}
    assert counters["USD in the window"] == "6e-06" and counters["tokens out"] == "960"
