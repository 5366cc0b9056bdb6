"""The monitor's return on investment per model version: the live serving cost per 1k requests and
per 1M tokens of each window, beside the release's training cost and USD per macro-F1 point (from
deploy's roi.json, select's figures); in metrics.json, in an ``roi`` snapshot and on the
dashboard's ROI panels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.deploy.core import release_roi
from components.select import roi as select_roi
from llm.drift import DriftParams, metric_type, write_report
from monitoring import roi
from monitoring.loop import run_scheduled
from monitoring.settings import Settings
from monitoring.workspace import add_snapshots, dashboard_panels, model_project, open_workspace, roi_panels
from tests.unit.test_monitoring_loop import VERSION, loopback_only, scenario  # noqa: F401 (fixtures)
from tests.unit.test_select_roi import COSTS, METRICS, NIGHT, PREVIOUS, table


def write_release(folder: Path, version: str = VERSION) -> Path:
    """A deploy output with roi.json as deploy writes it, from a decision.json as select writes it:
    training $0.045 (0.75 accelerator-h off-peak), 2 points over the previous version ($0.0225 a
    point), 15 over the baseline."""
    rows = table()
    folder.mkdir(parents=True)
    decision = {
        "chosen": "finetuned",
        "variant": "float",
        "roi": select_roi.return_on_investment(rows[0], rows, PREVIOUS, METRICS, NIGHT, COSTS),
    }
    (folder / "decision.json").write_text(json.dumps(decision))
    (folder / "roi.json").write_text(json.dumps(release_roi(version, str(folder / "decision.json"))))
    return folder


def values(report: dict) -> dict[str, float]:
    """{column: value} of the MeanValue metrics of a report dict."""
    return {m["config"]["column"]: m["value"] for m in report["metrics"] if metric_type(m) == "MeanValue"}


def test_the_release_figures_come_from_deploys_roi_json(tmp_path):
    release = roi.read_release(write_release(tmp_path / "deploy"))
    assert release["version"] == VERSION and release["model"] == "finetuned"
    assert release["training_usd"] == pytest.approx(0.045)
    assert release["training_accelerator_hours"] == pytest.approx(0.75)
    assert release["usd_per_point_vs_previous"] == pytest.approx(0.0225)
    assert release["macro_f1_points_vs_baseline"] == pytest.approx(15.0)
    assert roi.read_release(None) == {"skipped": roi.NO_RELEASE}
    assert "no roi.json" in roi.read_release(tmp_path)["skipped"]

    cost = {"usd_per_1k_requests": 1.4e-4, "usd_per_1m_tokens": 4.6e-3}
    served = roi.version_roi(VERSION, cost, release)
    assert served["usd_per_1k_requests"] == 1.4e-4 and served["release"]["training_usd"] == pytest.approx(
        0.045
    )
    # Another version in the window (an older replica) gets the live figures only.
    other = roi.version_roi("old", cost, release)
    assert other["release"] is None and other["release_reason"] == f"not the released version ({VERSION})"
    # The snapshot's row: serving in mUSD (0.14 per 1k requests, 4.6 per 1M tokens), the release in USD.
    assert roi.roi_row(served) == {
        roi.MUSD_PER_1K_REQUESTS: pytest.approx(0.14),
        roi.MUSD_PER_1M_TOKENS: pytest.approx(4.6),
        roi.TRAINING_USD: pytest.approx(0.045),
        roi.USD_PER_POINT_VS_PREVIOUS: pytest.approx(0.0225),
        roi.USD_PER_POINT_VS_BASELINE: pytest.approx((0.045 - 0.0006) / 15),
    }
    assert roi.roi_report({"usd_per_1k_requests": None, "usd_per_1m_tokens": None, "release": None}) is None


def test_the_roi_snapshot_holds_the_figures_the_panels_plot(tmp_path):
    release = roi.read_release(write_release(tmp_path / "deploy"))
    figures = roi.version_roi(VERSION, {"usd_per_1k_requests": 1.4e-4, "usd_per_1m_tokens": 4.6e-3}, release)
    snapshot = roi.roi_report(figures)
    got = values(write_report(snapshot, tmp_path / "roi"))
    assert got == pytest.approx(roi.roi_row(figures))
    # Every ROI panel series reads a MeanValue of one of those columns from the roi snapshots.
    panels = roi_panels()
    assert [p.title for p in panels] == [
        "Serving cost (mUSD: thousandths of a US dollar) per 1k requests and per 1M tokens",
        "Release: training cost (USD)",
        "Release: USD per macro-F1 point gained",
    ]
    series = [v for p in panels for v in p.values]
    assert all(p.plot_params["plot_type"] == "bar" for p in panels)
    assert all(v.metric.endswith(":MeanValue") and v.tags == [roi.TAG_ROI] for v in series)
    assert [v.metric_labels["column"] for v in series] == [c for c, _ in roi.COLUMNS] == list(got)
    assert [p.title for p in dashboard_panels()][-3:] == [p.title for p in panels]
    # Added to the version's project, the dashboard is the declared one, ROI panels included.
    ws = open_workspace(tmp_path / "workspace")
    add_snapshots(ws, VERSION, {roi.TAG_ROI: snapshot}, run_name="window 1")
    project = model_project(ws, VERSION)
    titles = [p.title for p in ws.get_dashboard(project.id).panels]
    assert titles == [p.title for p in dashboard_panels()] and len(ws.list_runs(project.id)) == 1


def test_a_monitor_run_puts_live_and_release_roi_in_metrics_and_the_workspace(scenario, tmp_path):  # noqa: F811
    release = write_release(tmp_path / "deploy")
    summary, folder = run_scheduled(
        scenario["log"],
        scenario["reference"],
        tmp_path / "runs",
        DriftParams(),
        Settings(),
        "2026-05-01T11:00:00Z",
        workspace=tmp_path / "workspace",
        release=str(release),
    )
    metrics = json.loads((folder / "metrics.json").read_text())
    version = metrics["versions"][VERSION]
    # 300 one-text requests of 5 ms compute and 30 tokens at $0.10/h.
    usd = 300 * 5.0 / 1000 / 3600 * 0.10
    assert version["roi"]["usd_per_1k_requests"] == pytest.approx(usd / 300 * 1000, rel=1e-5)
    assert version["roi"]["usd_per_1m_tokens"] == pytest.approx(usd / 9000 * 1e6, rel=1e-5)
    assert version["roi"]["release"]["training_usd"] == pytest.approx(0.045)
    assert version["roi"]["release"]["usd_per_point_vs_previous"] == pytest.approx(0.0225)
    assert metrics["release_roi"]["version"] == VERSION and summary["release_roi"]["model"] == "finetuned"
    report = json.loads((folder / VERSION / "roi" / "report.json").read_text())
    assert values(report)[roi.MUSD_PER_1K_REQUESTS] == pytest.approx(usd / 300 * 1e6, rel=1e-5)
    assert values(report)[roi.TRAINING_USD] == pytest.approx(0.045)
    ws = open_workspace(tmp_path / "workspace")
    project = model_project(ws, VERSION)
    assert "Release: USD per macro-F1 point gained" in [p.title for p in ws.get_dashboard(project.id).panels]
