"""The continuous monitor's Evidently dashboard as a person opens it (`make monitor-ui`), in
headless Chromium with no network: a workspace built with monitoring.reports and
monitoring.workspace from two windows of fixture predictions, served by `evidently ui` on a free
loopback port. Every declared panel is there; the prediction-drift and cost bars read the values the
snapshots hold (not 0); the quality panel says there are no labels yet; nothing is fetched off the
machine."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from llm.drift import DriftParams
from tests import browser

ROOT = Path(__file__).resolve().parents[2]
RAW = ROOT / "data" / "raw" / "rotten_tomatoes.csv.bz2"
VERSION = "abc123def456"
T0 = datetime(2026, 5, 1, 11, 0, tzinfo=UTC)
# (texts: reviews or plot summaries, share predicted positive, latency offset ms, compute ms) per
# window; the reference is 100 reviews, half predicted positive.
WINDOWS = (("reviews", 0.8, 0.0, 5.0), ("plots", 0.65, 15.0, 6.0))
ROWS = 100


def _descriptors(texts):
    """Cheap stand-ins for the NLTK descriptors (tested in test_monitoring_loop), so the fixture
    takes seconds rather than the NLTK load."""
    return {
        "sentiment": [(len(t) % 21 - 10) / 10 for t in texts],
        "oov_share": [(len(t.split()) % 10) / 20 for t in texts],
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """The workspace folder, its project id and what its snapshots hold per window."""
    browser.require_browser()  # before the work: without Chromium the test skips at once
    from monitoring import reports
    from monitoring.loop import ops_frame
    from monitoring.settings import Settings
    from monitoring.workspace import add_snapshots, model_project, open_workspace

    frame = pd.read_csv(RAW, usecols=["category", "text"]).dropna().sample(frac=1.0, random_state=0)
    texts = {
        "reviews": frame.loc[frame["category"] != "plot", "text"].tolist(),
        "plots": frame.loc[frame["category"] == "plot", "text"].tolist(),
    }

    def predicted(batch: list[str], positive: float):
        k = round(len(batch) * positive)
        labels = ["positive"] * k + ["negative"] * (len(batch) - k)
        return reports.text_frame(batch, labels, [0.8 if x == "positive" else 0.3 for x in labels])

    settings, params = Settings(), DriftParams(min_rows=10)
    folder = tmp_path_factory.mktemp("evidently") / "workspace"
    ws = open_workspace(folder)
    expected: dict[str, list[float]] = {"prediction_drift": [], "micro_usd": []}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reports, "descriptor_values", _descriptors)
        reference = predicted(texts["reviews"][:ROWS], 0.5)
        for k, (kind, positive, slower, compute_ms) in enumerate(WINDOWS):
            end = T0 + timedelta(hours=k)
            start = ROWS if kind == "reviews" else 0
            current = predicted(texts[kind][start : start + ROWS], positive)
            drift = reports.run_drift_report(
                reference, current, params, settings, timestamp=end, tags=["drift"]
            )
            rows = pd.DataFrame(
                {
                    "latency_ms": [20.0 + slower + i % 7 for i in range(ROWS)],
                    "compute_ms": [compute_ms] * ROWS,
                    "tokens": [30] * ROWS,
                }
            )
            ops_rows = ops_frame(rows, settings.prices.serve_usd_per_hour)
            ops = reports.run_ops_report(ops_rows, None, settings, timestamp=end, tags=["ops"])
            add_snapshots(ws, VERSION, {"drift": drift, "ops": ops}, run_name=f"window {end.isoformat()}")
            score = reports.read_drift(drift.dict(), params.drift_share)["prediction_drift"]["score"]
            expected["prediction_drift"].append(score)
            expected["micro_usd"].append(float(ops_rows["micro_usd"].sum()))
    return {"folder": folder, "project": str(model_project(ws, VERSION).id), "expected": expected}


@pytest.fixture(scope="module")
def ui(workspace):
    """`evidently ui` over the workspace on a free loopback port; its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [str(Path(sys.executable).parent / "evidently"), "ui", "--workspace", str(workspace["folder"])]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command,
        env={**os.environ, "DO_NOT_TRACK": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # up to a minute on a loaded machine: a readiness wait, nothing timed
            if server.poll() is not None:
                pytest.fail(
                    f"evidently ui exited {server.returncode}: {server.stderr.read().decode()[-2000:]}"
                )
            try:
                urllib.request.urlopen(f"{base}/api/projects", timeout=2).read()
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("evidently ui did not answer /api/projects")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stderr.close()


def _panels(dom: str) -> dict[str, str]:
    """{panel title: the panel's HTML up to the next title}, in page order."""
    parts = re.split(r"(?=<h5 )", dom)[1:]
    return {re.search(r"<h5[^>]*>([^<]*)</h5>", part)[1]: part for part in parts}


def _bar_values(panel: str) -> list[float]:
    """The values a person reads off a bar panel: each bar's top against the y axis's ticks."""
    axis = panel[panel.index("MuiChartsAxis-directionY") :]
    ticks = re.findall(
        r'translate\(0, ([\d.]+)\)" class="MuiChartsAxis-tickContainer">.*?<tspan[^>]*>([^<]+)</tspan>', axis
    )
    (y0, v0), (y1, v1) = [(float(y), float(v)) for y, v in ticks[:2]]
    bars = re.findall(r'<rect[^>]* y="([\d.]+)"[^>]* height="([\d.]+)"[^>]*class="MuiBarElement-root', panel)
    return [v0 + (float(y) - y0) * (v1 - v0) / (y1 - y0) for y, _ in bars]


def test_the_dashboard_shows_its_panels_and_their_values(workspace, ui):
    browser.require_browser()
    from monitoring.workspace import NO_LABELS, QUALITY_TITLE, dashboard_panels

    page = browser.render(f"{ui}/projects/{workspace['project']}", budget_ms=15000)

    assert page.offsite == ()
    panels = _panels(page.dom)
    titles = [p.title for p in dashboard_panels()]
    assert [t for t in panels if t in titles] == titles

    counter = panels["Predictions per window"]
    assert re.search(r"<h2[^>]*>100</h2>", counter)
    expected = workspace["expected"]
    drift = _bar_values(panels[titles[2]])
    assert drift == pytest.approx(expected["prediction_drift"], rel=0.05)
    assert min(drift) > 0.05  # the distances of 80% and 65% positive against 50%, not 0
    cost = _bar_values(panels["Cost per window (µUSD: millionths of a US dollar)"])
    assert cost == pytest.approx(expected["micro_usd"], rel=0.05)
    assert NO_LABELS in panels[QUALITY_TITLE]
