"""The continuous monitor: it reads exactly its time window of the prediction log; a window of
held-out reviews raises no alert and a window of plot summaries raises a drift alert (CLI exit
status and alert JSON); quality, latency and cost alerts follow the params thresholds and prices;
snapshots land in the Evidently workspace; NLTK descriptors work offline; the webhook posts the
alert JSON; ``run_scheduled``, the one entry of the CLI and the Kubeflow component, writes the run's
page and alert JSON and fails on an alert; the DAG's monitor stage and the continuous monitor give
the same text-drift verdict through the floor's drift report; the Kubeflow pipeline compiles with
the cron from params."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from components.common.io import write_jsonl
from components.common.params import ParamsError, from_dict, load_all
from llm.drift import DriftParams
from monitoring.__main__ import main
from monitoring.alerts import Alert, alert_payload, check_alerts, post_webhook, raise_on_alert
from monitoring.cost import serving_cost, stage_seconds, training_cost
from monitoring.descriptors import oov_share, sentiment, words_of
from monitoring.loop import (
    ALERTS_FILE,
    REPORT_HTML,
    latency_summary,
    monitor_window,
    run_forever,
    run_scheduled,
    sample_index,
    training_metrics,
    window_end_floor,
    window_end_of,
)
from monitoring.settings import Settings
from monitoring.window import attach_labels, parse_time, partition_dates, read_window, window_bounds
from serving.prediction_log import LABELS, PREDICTIONS, PredictionLog
from tests.task_fixtures import write_params

ROOT = Path(__file__).resolve().parents[2]
RAW = ROOT / "data" / "raw" / "rotten_tomatoes.csv.bz2"
T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
VERSION = "abc123def456"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any connection beyond loopback fails the test (NLTK downloads, telemetry ...)."""
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in LOOPBACK:
            raise AssertionError(f"network access attempted: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


# --- the time window ----------------------------------------------------------------------------


def _row(request_id: str, ts: datetime, text: str = "a text", prediction: str = "positive", **extra) -> dict:
    return {
        "request_id": request_id,
        "item": 0,
        "ts": ts,
        "text": text,
        "prediction": prediction,
        "score": 0.8,
        "latency_ms": 20.0,
        "compute_ms": 5.0,
        "tokens": 30,
        "model_version": VERSION,
        **extra,
    }


def test_window_bounds_and_partition_days():
    start, end = window_bounds(datetime(2026, 5, 2, 0, 30), 60)  # naive = UTC
    assert (start, end) == (datetime(2026, 5, 1, 23, 30, tzinfo=UTC), datetime(2026, 5, 2, 0, 30, tzinfo=UTC))
    assert partition_dates(start, end) == ["2026-05-01", "2026-05-02"]
    # A window ending exactly at midnight does not touch the next day.
    assert partition_dates(datetime(2026, 5, 1, 23, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC)) == [
        "2026-05-01"
    ]
    assert partition_dates(end, start) == []
    assert parse_time("2026-05-01T12:00:00Z") == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parse_time("2026-05-01T14:00:00+02:00") == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert window_end_floor(datetime(2026, 5, 1, 12, 47, 3, tzinfo=UTC), 15) == datetime(
        2026, 5, 1, 12, 45, tzinfo=UTC
    )
    # A run's window end: the one given, or the run's time; rounded down when aligned.
    now = datetime(2026, 5, 1, 12, 47, 3, tzinfo=UTC)
    assert window_end_of("", 15, aligned=True, now=now) == datetime(2026, 5, 1, 12, 45, tzinfo=UTC)
    assert window_end_of(None, 15, aligned=False, now=now) == now
    assert window_end_of("2026-05-01T11:50:00Z", 60, aligned=True) == datetime(2026, 5, 1, 11, tzinfo=UTC)
    assert window_end_of("2026-05-01T11:50:00Z", 60, aligned=False) == datetime(
        2026, 5, 1, 11, 50, tzinfo=UTC
    )


def test_the_monitor_reads_exactly_its_time_window(tmp_path):
    log = PredictionLog(str(tmp_path / "log"), background=False)
    start, end = datetime(2026, 5, 1, 23, 30, tzinfo=UTC), datetime(2026, 5, 2, 0, 30, tzinfo=UTC)
    micro = timedelta(microseconds=1)
    rows = {
        "before": start - micro,
        "at-start": start,
        "late-day-1": datetime(2026, 5, 1, 23, 59, 59, 999999, tzinfo=UTC),
        "midnight": datetime(2026, 5, 2, tzinfo=UTC),
        "last": end - micro,
        "at-end": end,  # belongs to the next window
        "next-day": datetime(2026, 5, 3, 0, 10, tzinfo=UTC),
        "old": datetime(2026, 4, 20, 12, tzinfo=UTC),
    }
    log.predictions.append(_row(name, ts) for name, ts in rows.items())
    log.close()
    # A part still being written (dot name) is never read.
    partial = tmp_path / "log" / PREDICTIONS / "date=2026-05-01" / ".part-x.parquet.tmp"
    partial.write_bytes(b"half a file")

    read = read_window(str(tmp_path / "log"), start, end)
    assert read.frame["request_id"].tolist() == ["at-start", "late-day-1", "midnight", "last"]
    assert read.partitions == ["2026-05-01", "2026-05-02"]
    assert all("date=2026-05-01" in f or "date=2026-05-02" in f for f in read.files)  # other days not opened
    assert str(read.frame["ts"].dt.tz) == "UTC"

    # Back-to-back windows split the rows with no overlap and no gap.
    previous = (
        read_window(str(tmp_path / "log"), start - timedelta(hours=1), start).frame["request_id"].tolist()
    )
    following = read_window(str(tmp_path / "log"), end, end + timedelta(hours=1)).frame["request_id"].tolist()
    assert previous == ["before"] and following == ["at-end"]
    empty = read_window(
        str(tmp_path / "log"), datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC)
    )
    assert len(empty.frame) == 0 and "request_id" in empty.frame.columns and empty.files == []


def test_labels_join_by_request_id_and_item_latest_wins():
    predictions = pd.DataFrame(
        {"request_id": ["a", "a", "b", "c"], "item": [0, 1, 0, 0], "prediction": ["p"] * 4}
    )
    labels = pd.DataFrame(
        {
            "request_id": ["a", "b", "b", "zzz"],
            "item": [1, 0, 0, 0],
            "ts": pd.to_datetime(
                ["2026-05-01T10:00Z", "2026-05-01T11:00Z", "2026-05-01T10:00Z", "2026-05-01T10:00Z"]
            ),
            "label": ["positive", "negative", "positive", "positive"],
        }
    )
    joined = attach_labels(predictions, labels)
    assert joined["label"].tolist() == [None, "positive", "negative", None]
    assert len(joined) == 4


# --- pure pieces: sampling, latency, cost, alerts -----------------------------------------------


def test_sample_index_is_seeded_and_order_free():
    keys = [f"r{i}:0" for i in range(100)]
    picked = sample_index(keys, 10, seed=0)
    assert len(picked) == 10 and picked == sorted(picked)
    reversed_keys = keys[::-1]
    assert {reversed_keys[i] for i in sample_index(reversed_keys, 10, seed=0)} == {keys[i] for i in picked}
    assert sample_index(keys, 1000, seed=0) == list(range(100))


def test_latency_summary():
    summary = latency_summary([float(v) for v in range(1, 101)])
    assert summary["p50_ms"] == pytest.approx(50.5) and summary["p95_ms"] == pytest.approx(95.05)
    assert summary["max_ms"] == 100.0 and summary["mean_ms"] == 50.5
    assert latency_summary([])["p95_ms"] is None


def test_cost_figures_come_from_params_prices():
    cost = serving_cost(
        requests=2000, predictions=2500, tokens=80_000, compute_seconds=7200.0, usd_per_hour=0.5
    )
    assert cost["usd"] == pytest.approx(1.0)  # 2 compute-hours at $0.50
    assert cost["usd_per_1k_requests"] == pytest.approx(0.5)
    assert cost["usd_per_1m_tokens"] == pytest.approx(12.5)
    assert serving_cost(0, 0, 0, 0.0, 0.5)["usd_per_1k_requests"] is None
    assert stage_seconds({"seconds": 90.5, "train_seconds": 80}) == 90.5
    assert stage_seconds({"train_seconds": 80}) == 80.0
    assert stage_seconds({"valid_accuracy": 0.8}) is None and stage_seconds(None) is None
    pretrain = {"seconds": 1800.0, "accelerator_hours": 0.5}  # one machine for half an hour
    training = training_cost({"pretrain": pretrain, "finetune": None}, usd_per_hour=2.0)
    # The stage's own figures stay visible; a missing stage is named, never priced at 0, and no
    # total over part of training is shown as the total.
    assert training["pretrain_usd"] == pytest.approx(1.0) and training["pretrain_seconds"] == 1800.0
    assert training["usd"] is None and training["seconds"] is None and training["accelerator_hours"] is None
    assert training["stages_missing"] == ["finetune"] and training["finetune_seconds"] is None
    assert training["finetune_usd"] is None and training["missing_reasons"] == {"finetune": "no metrics.json"}


def test_training_cost_is_unknown_until_every_training_stage_recorded_its_time(tmp_path):
    prices = load_all(ROOT / "params.yaml")["monitoring"].prices  # the one price source
    pretrain, finetune = tmp_path / "pretrain", tmp_path / "finetune"
    pretrain.mkdir()
    finetune.mkdir()
    (pretrain / "metrics.json").write_text(
        json.dumps({"seconds": 1800.0, "seconds_this_run": 600.0, "runs": 2, "accelerator_hours": 0.5})
    )
    folders = {"pretrain": str(pretrain), "finetune": str(finetune)}
    # finetune's metrics.json as it was before the stage recorded its time: no seconds.
    (finetune / "metrics.json").write_text(json.dumps({"valid_accuracy": 0.8}))
    cost = training_cost(training_metrics(folders), prices.train_usd_per_hour)
    assert cost["usd"] is None and cost["seconds"] is None and cost["stages_missing"] == ["finetune"]
    assert cost["missing_reasons"] == {"finetune": "metrics.json has no seconds"}
    assert cost["pretrain_seconds"] == 1800.0  # the cumulative figure, not this run's
    # Seconds without accelerator-hours cannot be priced without guessing the devices either.
    (finetune / "metrics.json").write_text(json.dumps({"seconds": 900.0}))
    cost = training_cost(training_metrics(folders), prices.train_usd_per_hour)
    assert cost["usd"] is None and cost["missing_reasons"] == {
        "finetune": "metrics.json has no accelerator_hours"
    }
    # Both stages recorded their time: priced per accelerator-hour at monitoring.prices.
    (finetune / "metrics.json").write_text(json.dumps({"seconds": 900.0, "accelerator_hours": 0.25}))
    cost = training_cost(training_metrics(folders), prices.train_usd_per_hour)
    assert cost["stages_missing"] == [] and cost["missing_reasons"] == {}
    assert cost["seconds"] == 2700.0 and cost["accelerator_hours"] == 0.75
    assert cost["usd"] == pytest.approx(0.75 * prices.train_usd_per_hour)
    assert cost["usd"] == pytest.approx(cost["pretrain_usd"] + cost["finetune_usd"])
    assert cost["usd_per_hour"] == prices.train_usd_per_hour
    assert training_cost(training_metrics(folders), 1.0)["usd"] == pytest.approx(0.75)
    # A training stage not given at all is missing as well, not left out of the total.
    assert training_cost(training_metrics({"pretrain": str(pretrain)}), 1.0)["stages_missing"] == ["finetune"]
    assert training_cost(training_metrics({}), 1.0)["stages_missing"] == ["finetune", "pretrain"]


def _summary(**overrides) -> dict:
    summary = {
        "model_version": VERSION,
        "drift": {
            "drift_detected": False,
            "drift_share": 0.0,
            "drift_share_threshold": 0.5,
            "drifted_columns": 0,
            "columns": 7,
        },
        "prediction_drift": {
            "drift_detected": False,
            "score": 0.02,
            "threshold": 0.1,
            "method": "jensenshannon",
        },
        "quality": {"labelled": 100, "accuracy": 0.9},
        "latency": {"p95_ms": 50.0, "drift": {"drift_detected": None, "skipped": "no_previous_window"}},
        "cost": {"usd_per_1k_requests": 0.001},
    }
    summary.update(overrides)
    return summary


def test_alerts_follow_the_thresholds():
    thresholds = Settings().alerts
    assert check_alerts(_summary(), thresholds) == []
    drifted = _summary(
        drift={
            "drift_detected": True,
            "drift_share": 1.0,
            "drift_share_threshold": 0.5,
            "drifted_columns": 7,
            "columns": 7,
        },
        quality={"labelled": 100, "accuracy": 0.4},
        latency={
            "p95_ms": 2500.0,
            "drift": {"drift_detected": True, "score": 3.0, "threshold": 0.5, "method": "wasserstein"},
        },
        cost={"usd_per_1k_requests": 0.2},
    )
    kinds = [a.kind for a in check_alerts(drifted, thresholds)]
    assert kinds == ["data_drift", "quality", "latency", "cost"]  # latency drift alerts only when asked
    strict = from_dict(type(thresholds), {"latency_drift": True, "data_drift": False}, "monitoring.alerts")
    assert [a.kind for a in check_alerts(drifted, strict)] == ["quality", "latency", "latency_drift", "cost"]
    skipped = _summary(quality={"labelled": 3, "accuracy": None, "skipped": "too_few_labels"})
    assert check_alerts(skipped, thresholds) == []
    payload = alert_payload([Alert("cost", VERSION, 0.2, 0.05, "too dear")], {"end": "x"})
    assert payload == {
        "alerting": True,
        "count": 1,
        "window": {"end": "x"},
        "alerts": [
            {"kind": "cost", "model_version": VERSION, "value": 0.2, "threshold": 0.05, "message": "too dear"}
        ],
    }


def test_monitoring_settings_are_checked():
    assert from_dict(Settings, {}, "monitoring") == Settings()
    with pytest.raises(ParamsError, match=r"^monitoring\.alerts\.min_accuracy: must be within \[0, 1\]"):
        from_dict(Settings, {"alerts": {"min_accuracy": 2}}, "monitoring")
    with pytest.raises(ParamsError, match=r"^monitoring\.prices\.serve_usd_per_hour: must be >= 0"):
        from_dict(Settings, {"prices": {"serve_usd_per_hour": -1}}, "monitoring")
    with pytest.raises(ParamsError, match=r"^monitoring\.schedule_cron: need 6 cron fields"):
        from_dict(Settings, {"schedule_cron": "0 * * * *"}, "monitoring")
    with pytest.raises(ParamsError, match=r"^monitoring\.alerts\.max_p95: unknown key"):
        from_dict(Settings, {"alerts": {"max_p95": 3}}, "monitoring")
    with pytest.raises(ParamsError, match=r"^monitoring\.window_minutes: must be > 0"):
        from_dict(Settings, {"window_minutes": 0}, "monitoring")
    # The drift thresholds stay in the monitor section (DriftParams), not here.
    with pytest.raises(ParamsError, match=r"^monitoring\.drift_share: unknown key"):
        from_dict(Settings, {"drift_share": 0.5}, "monitoring")


def test_webhook_posts_the_alert_json_and_survives_a_dead_endpoint():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    payload = {"alerting": True, "count": 0, "alerts": []}
    assert post_webhook(f"http://127.0.0.1:{server.server_port}/hook", payload, timeout_s=10)
    thread.join(timeout=10)
    server.server_close()
    assert received == [payload]
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    assert post_webhook(f"http://127.0.0.1:{dead}/hook", payload, timeout_s=5) is False


def test_run_forever_keeps_going_after_a_failed_run():
    ends = iter(datetime(2026, 5, 1, h, tzinfo=UTC) for h in range(10))
    seen = []

    def once(end):
        seen.append(end)
        if len(seen) == 2:
            raise RuntimeError("log unreachable")
        return {"alerts": len(seen) == 3}

    results = run_forever(once, interval_s=0.0, max_runs=3, clock=lambda: next(ends), sleep=lambda s: None)
    assert [r.get("failed", False) for r in results] == [False, True, False]
    assert [e.hour for e in seen] == [0, 1, 2]


# --- NLTK descriptors (installed at setup, never downloaded) -------------------------------------


def test_descriptors_offline():
    assert sentiment("A wonderful, moving and beautiful film.") > 0.5
    assert sentiment("An awful, boring, terrible mess.") < -0.5
    assert sentiment("The film runs 120 minutes.") == 0.0
    assert words_of("It's 2 hours -- long!") == ["Its", "2", "hours", "long"]
    assert oov_share("the cats were running") == 0.0  # lemmas: cat, run
    assert oov_share("the qwzx blorf") == pytest.approx(2 / 3)
    assert oov_share("!!!") == 0.0


def test_missing_nltk_data_is_an_error_not_a_download(tmp_path):
    code = "from monitoring.descriptors import sentiment; sentiment('fine')"
    env = {**os.environ, "NLTK_DATA": str(tmp_path / "empty"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "MissingNLTKData" in result.stderr and "fetch_nltk_data.py" in result.stderr


# --- the continuous monitor over a prediction log -----------------------------------------------

POSITIVE_WORDS = {"good", "great", "best", "fun", "funny", "love", "beautiful", "moving", "fine", "wonderful"}


def rule_model(text: str) -> tuple[str, float]:
    """Stands in for the classifier when writing the log: the monitor only reads what was logged."""
    return ("positive", 0.8) if set(text.lower().split()) & POSITIVE_WORDS else ("negative", 0.6)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict:
    """A reference (600 reviews with model predictions and labels) and a prediction log with held-out
    reviews in 10:00-11:00 (100 of them labelled later, 80 correctly) and plot summaries in 11:00-12:00."""
    root = tmp_path_factory.mktemp("monitoring")
    df = pd.read_csv(RAW, usecols=["category", "text"]).dropna().sample(frac=1.0, random_state=0)
    reviews = df.loc[df["category"] != "plot", "text"].tolist()
    plots = df.loc[df["category"] == "plot", "text"].tolist()
    write_jsonl(
        root / "predictions.jsonl",
        (
            {
                "id": f"t{i}",
                "text": t,
                "label": rule_model(t)[0] if i % 4 else "negative",
                "prediction": rule_model(t)[0],
                "score": rule_model(t)[1],
            }
            for i, t in enumerate(reviews[:600])
        ),
    )
    log = PredictionLog(str(root / "log"), background=False)

    def rows(texts, start, prefix, latency):
        for i, text in enumerate(texts):
            label, score = rule_model(text)
            yield _row(
                f"{prefix}{i}",
                start + timedelta(seconds=11 * i),
                text,
                label,
                score=score,
                latency_ms=latency + i % 7,
            )

    log.predictions.append(rows(reviews[600:900], T0, "h", latency=20.0))
    log.predictions.append(rows(plots[:300], T0 + timedelta(hours=1), "p", latency=40.0))
    log.labels.append(
        {
            "request_id": f"h{i}",
            "item": 0,
            "ts": T0 + timedelta(hours=2),
            "label": rule_model(reviews[600 + i])[0]
            if i % 5
            else ("positive" if rule_model(reviews[600 + i])[0] == "negative" else "negative"),
        }
        for i in range(100)
    )
    log.close()
    pretrain = root / "pretrain"
    pretrain.mkdir()
    (pretrain / "metrics.json").write_text(
        json.dumps({"seconds": 180.0, "accelerator_hours": 0.05, "valid_loss": 5.0})
    )
    return {
        "root": root,
        "log": str(root / "log"),
        "reference": str(root / "predictions.jsonl"),
        "pretrain": str(pretrain),
    }


def _cli(scenario, end: str, out: Path, params: Path, *extra: str) -> int:
    return main(
        [
            "--once",
            "--end",
            end,
            "--log",
            scenario["log"],
            "--reference",
            scenario["reference"],
            "--output",
            str(out),
        ]
        + [
            "--workspace",
            str(out / "workspace"),
            "--pretrain",
            scenario["pretrain"],
            "--finetune",
            str(out / "none"),
        ]
        + ["--params", str(params), *extra]
    )


def test_held_out_reviews_raise_no_alert_and_plot_summaries_do(scenario, tmp_path):
    params = write_params(tmp_path / "params.yaml")
    out = tmp_path / "monitoring"

    assert _cli(scenario, "2026-05-01T11:00:00Z", out, params) == 0
    run = out / "20260501T110000Z"
    metrics = json.loads((run / "metrics.json").read_text())
    reviews = metrics["versions"][VERSION]
    assert metrics["rows"] == 300 and metrics["partitions_read"] == ["2026-05-01"]
    assert reviews["drift"]["drift_detected"] is False and reviews["drift"]["columns"] == 7
    assert reviews["drift"]["scores"]["text"] < 0.6
    assert reviews["prediction_drift"]["drift_detected"] is False
    assert reviews["quality"]["labelled"] == 100 and reviews["quality"]["accuracy"] == pytest.approx(0.8)
    assert reviews["latency"]["p50_ms"] == pytest.approx(23.0)
    assert reviews["latency"]["drift"]["skipped"] == "no_previous_window"
    assert reviews["cost"]["requests"] == 300 and reviews["cost"]["tokens"] == 9000
    assert reviews["cost"]["usd"] == pytest.approx(300 * 5.0 / 1000 / 3600 * 0.10, rel=1e-3)
    assert metrics["training_cost"]["pretrain_seconds"] == 180.0
    assert metrics["training_cost"]["stages_missing"] == ["finetune"]
    # finetune's folder has no metrics.json: the training total is unknown, not pretrain alone.
    assert metrics["training_cost"]["usd"] is None and metrics["training_cost"]["seconds"] is None
    assert metrics["training_cost"]["pretrain_usd"] == pytest.approx(0.05 * 0.10)
    assert json.loads((run / "alerts.json").read_text())["alerting"] is False
    for report in ("drift", "ops", "quality", "roi"):
        assert (run / VERSION / report / "report.json").exists()
        assert "<html" in (run / VERSION / report / "report.html").read_text()[:2000].lower()
    assert (run / REPORT_HTML).read_text().count("<iframe") == 4  # the four, on one page

    assert _cli(scenario, "2026-05-01T12:00:00Z", out, params) == 1
    run = out / "20260501T120000Z"
    plots = json.loads((run / "metrics.json").read_text())["versions"][VERSION]
    assert plots["drift"]["drift_detected"] is True
    assert plots["drift"]["drifted_columns"] >= 5 and plots["drift"]["scores"]["text"] > 0.75
    assert plots["latency"]["drift"]["drift_detected"] is True  # 40 ms against the 20 ms hour before
    alerts = json.loads((run / "alerts.json").read_text())
    assert alerts["alerting"] is True and "data_drift" in [a["kind"] for a in alerts["alerts"]]
    assert all(a["model_version"] == VERSION for a in alerts["alerts"])
    latest = json.loads((out / "alerts.json").read_text())
    assert latest["alerts"] == alerts["alerts"] and latest["report"] == str(run)

    # Both runs are snapshots in the model's project, whose dashboard has the promised panels.
    from monitoring.workspace import model_project, open_workspace

    workspace = open_workspace(out / "workspace")
    project = model_project(workspace, VERSION)
    assert [p.name for p in workspace.list_projects()] == [f"sentiment model {VERSION}"]
    assert len(workspace.list_runs(project.id)) == 4 + 3  # drift, ops, quality, roi; then drift, ops, roi
    titles = " | ".join(p.title for p in workspace.get_dashboard(project.id).panels)
    for word in ("drift", "Latency", "Cost", "accuracy"):
        assert word in titles


def test_quality_latency_and_cost_alerts_follow_params(scenario, tmp_path):
    settings = from_dict(
        Settings,
        {
            "alerts": {"min_accuracy": 0.9, "max_latency_p95_ms": 10.0, "max_usd_per_1k_requests": 0.01},
            "prices": {"serve_usd_per_hour": 100.0},
        },
        "monitoring",
    )
    summary = monitor_window(
        scenario["log"],
        scenario["reference"],
        tmp_path / "run",
        DriftParams(),
        settings,
        T0 + timedelta(hours=1),
        now=T0 + timedelta(hours=3),
    )
    assert summary["alert_kinds"] == ["cost", "latency", "quality"]
    cost = summary["versions"][VERSION]["cost"]
    # 300 requests x 5 ms of compute at $100 per hour.
    assert cost["usd"] == pytest.approx(300 * 0.005 / 3600 * 100.0, rel=1e-4)
    assert cost["usd_per_1k_requests"] == pytest.approx(cost["usd"] / 300 * 1000, rel=1e-4)
    alerts = json.loads((tmp_path / "run" / "alerts.json").read_text())
    assert {a["kind"] for a in alerts["alerts"]} == {"cost", "latency", "quality"}

    # Labels not yet arrived (now = the window's end): quality is not judged, so it cannot alert.
    early = monitor_window(
        scenario["log"],
        scenario["reference"],
        tmp_path / "early",
        DriftParams(),
        settings,
        T0 + timedelta(hours=1),
        now=T0 + timedelta(hours=1),
    )
    assert early["versions"][VERSION]["quality"]["skipped"] == "too_few_labels"
    assert "quality" not in early["alert_kinds"]


def test_an_empty_window_is_not_an_alert(scenario, tmp_path):
    params = write_params(tmp_path / "params.yaml")
    assert _cli(scenario, "2026-06-01T00:00:00Z", tmp_path / "out", params, "--no-workspace") == 0
    metrics = json.loads((tmp_path / "out" / "20260601T000000Z" / "metrics.json").read_text())
    assert metrics["rows"] == 0 and metrics["versions"] == {} and metrics["partitions_read"] == ["2026-05-31"]
    assert not (tmp_path / "out" / "workspace").exists()


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"monitoring": {"window_minutes": 0}}, "monitoring.window_minutes: must be > 0"),
        ({"monitor": {"drift_share": 0}}, "monitor.drift_share: must be > 0"),
    ],
)
def test_bad_monitor_params_exit_2(scenario, tmp_path, capsys, sections, message):
    params = write_params(tmp_path / "params.yaml", **sections)
    assert _cli(scenario, "2026-05-01T11:00:00Z", tmp_path / "out", params) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_labels_log_kind_reads_by_arrival_time(scenario):
    labels = read_window(scenario["log"], T0, T0 + timedelta(hours=3), kind=LABELS).frame
    assert len(labels) == 100 and set(labels["request_id"]) == {f"h{i}" for i in range(100)}


def test_monitoring_pipeline_compiles_with_the_cron_from_params(tmp_path):
    import yaml

    from pipelines.monitoring_pipeline import compile_pipeline, recurring_run_arguments
    from pipelines.monitoring_pipeline import schedule as schedule_run

    params = write_params(
        tmp_path / "params.yaml", monitor={"drift_share": 0.4}, monitoring={"schedule_cron": "0 */15 * * * *"}
    )
    path = compile_pipeline(params, tmp_path / "monitoring.yaml")
    spec = yaml.safe_load(path.read_text())
    assert spec["pipelineInfo"]["name"] == "llm-monitoring"
    assert "monitor-window" in spec["root"]["dag"]["tasks"]
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    defaults = inputs["monitoring"]["defaultValue"]
    assert defaults["schedule_cron"] == "0 */15 * * * *"
    drift = from_dict(DriftParams, inputs["monitor"]["defaultValue"], "monitor", struct_numbers=True)
    assert drift == DriftParams(drift_share=0.4)  # the drift thresholds, from the monitor section
    assert inputs["pretrain_uri"]["defaultValue"].startswith("s3://")  # training cost on the cluster
    assert inputs["finetune_uri"]["defaultValue"].startswith("s3://")
    schedule = recurring_run_arguments(from_dict(Settings, defaults, "monitoring", struct_numbers=True))
    assert schedule == {
        "cron_expression": "0 */15 * * * *",
        "max_concurrency": 1,
        "no_catchup": True,
        "enabled": True,
    }

    class RecordingClient:  # records what would be sent to a Kubeflow API server
        def create_recurring_run(self, **kwargs):
            self.kwargs = kwargs
            return "run"

    client = RecordingClient()
    assert schedule_run(client, str(path), str(params), "exp-1", log_uri="s3://lake/log") == "run"
    assert client.kwargs["cron_expression"] == "0 */15 * * * *" and client.kwargs["experiment_id"] == "exp-1"
    assert client.kwargs["params"]["log_uri"] == "s3://lake/log"
    assert client.kwargs["params"]["monitoring"]["schedule_cron"] == "0 */15 * * * *"
    assert client.kwargs["params"]["monitor"]["drift_share"] == 0.4


def test_kubeflow_component_runs_the_same_monitor_locally(scenario, tmp_path):
    """The recurring run's component under kfp.local: same code, alert JSON as an artifact, the
    training cost from the pretrain folder it is given."""
    import shutil

    from kfp import dsl, local

    from components.common.params import to_dict
    from monitoring.component import monitor_window as monitor_component
    from pipelines.cluster import load_cluster

    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    shutil.copyfile(scenario["reference"], evaluation / "predictions.jsonl")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    component = monitor_component.op(load_cluster().image)

    def one_window(monitor: dict, monitoring: dict):
        imported = dsl.importer(artifact_uri=str(evaluation), artifact_class=dsl.Dataset)
        component(
            log_uri=scenario["log"],
            evaluation=imported.output,
            monitor=monitor,
            monitoring=monitoring,
            pretrain_uri=scenario["pretrain"],
            window_end="2026-05-01T12:00:00Z",
            fail_on_alert=False,
        )

    # this module's annotations are strings (PEP 563)
    one_window.__annotations__ = {"monitor": dict, "monitoring": dict}
    one_window = dsl.pipeline(one_window)

    one_window(monitor=to_dict(DriftParams()), monitoring=to_dict(Settings()))
    (alerts,) = (tmp_path / "root").glob("*/monitor-window/alerts")
    payload = json.loads(alerts.read_text())
    assert payload["alerting"] is True and "data_drift" in [a["kind"] for a in payload["alerts"]]
    (page,) = (tmp_path / "root").glob("*/monitor-window/report")
    assert page.read_text().count("<iframe") == 3  # the drift, ops and roi reports of the one version
    (metrics,) = (tmp_path / "root").glob("*/monitor-window/reports/20260501T120000Z/metrics.json")
    training = json.loads(metrics.read_text())["training_cost"]
    assert training["pretrain_seconds"] == 180.0 and training["stages_missing"] == ["finetune"]


def test_run_scheduled_writes_the_page_and_alerts_and_fails_on_an_alert(scenario, tmp_path):
    """The one entry of a run (CLI and Kubeflow component): the window ends at the run's time
    rounded down to a whole window; the run folder gets every report on one page and the alert
    JSON; an alerting run raises with the alert messages, a quiet one does not."""
    summary, folder = run_scheduled(
        scenario["log"],
        scenario["reference"],
        tmp_path / "out",
        DriftParams(),
        Settings(),
        now=datetime(2026, 5, 1, 12, 17, tzinfo=UTC),
        workspace="",  # Kubeflow's "not given"
        webhook="",
        training={"pretrain": scenario["pretrain"], "finetune": ""},
    )
    assert folder == tmp_path / "out" / "20260501T120000Z"
    assert summary["window"]["end"] == "2026-05-01T12:00:00+00:00"
    assert summary["training_cost"]["pretrain_seconds"] == 180.0
    assert summary["training_cost"]["stages_missing"] == ["finetune"]
    assert summary["training_cost"]["usd"] is None  # never a partial total
    assert not (tmp_path / "out" / "workspace").exists()

    page = (folder / REPORT_HTML).read_text()
    assert page.count("<iframe") == 3  # drift, ops, roi
    assert page.index(f"<h1>{VERSION}: drift</h1>") < page.index(f"<h1>{VERSION}: ops</h1>")
    drift_page = (folder / VERSION / "drift" / "report.html").read_text()
    assert drift_page.replace("&", "&amp;").replace('"', "&quot;") in page  # the report, quoted for srcdoc

    payload = json.loads((folder / ALERTS_FILE).read_text())
    assert payload["alerting"] is True and payload["count"] == summary["alerts"] > 0
    assert json.loads((tmp_path / "out" / ALERTS_FILE).read_text())["report"] == str(folder)
    messages = "; ".join(a["message"] for a in payload["alerts"])
    with pytest.raises(RuntimeError, match=r"^monitoring alerts: text drift: ") as raised:
        raise_on_alert(folder / ALERTS_FILE)
    assert str(raised.value) == f"monitoring alerts: {messages}"
    raise_on_alert(alert_payload([], summary["window"]))  # a quiet run raises nothing


# --- one drift code path: the DAG's monitor stage and the continuous monitor ---------------------


def test_the_monitor_stage_and_the_continuous_monitor_agree_on_text_drift(tmp_path):
    """Same reference and current texts, same columns (the text and its features): the stage's
    verdict (components.monitor.core.run) and the continuous monitor's drift report
    (monitoring.reports, with its prediction and score metrics on top) are equal, because both
    are the floor's report read by the floor's verdict; the monitor's extra descriptor columns do
    not change the shared columns' scores."""
    from components.monitor.core import run as run_stage
    from llm.drift import DRIFT_COLUMNS, write_report
    from monitoring.reports import TEXT_DRIFT_COLUMNS, read_drift, run_drift_report, text_frame

    df = pd.read_csv(RAW, usecols=["category", "text"]).dropna().sample(frac=1.0, random_state=2)
    df = df[df["text"].str.strip() != ""]
    reviews = df.loc[df["category"] != "plot", "text"].tolist()
    plots = df.loc[df["category"] == "plot", "text"].tolist()
    reference, batches = reviews[:200], {"reviews": reviews[200:350], "plots": plots[:150]}
    write_jsonl(tmp_path / "predictions.jsonl", ({"id": f"r{i}", "text": t} for i, t in enumerate(reference)))
    for name, texts in batches.items():
        write_jsonl(
            tmp_path / "batches" / f"{name}.jsonl",
            ({"id": f"{name}{i}", "text": t} for i, t in enumerate(texts)),
        )
    drift = DriftParams()
    stage = run_stage(tmp_path / "predictions.jsonl", tmp_path / "batches", str(tmp_path / "stage"), drift)

    def frame(texts):
        labelled = [rule_model(t) for t in texts]
        return text_frame(texts, [p for p, _ in labelled], [s for _, s in labelled])

    for name, texts in batches.items():
        snapshot = run_drift_report(frame(reference), frame(texts), drift, Settings(), columns=DRIFT_COLUMNS)
        monitor = read_drift(
            write_report(snapshot, tmp_path / "monitor" / name), drift.drift_share, DRIFT_COLUMNS
        )
        verdict = stage["batches"][name]
        assert monitor["drift"]["drift_detected"] is verdict["drift_detected"]
        assert (monitor["drift"]["drifted_columns"], monitor["drift"]["columns"]) == (
            verdict["drifted_columns"],
            verdict["columns"],
        )
        assert monitor["drift"]["drift_share"] == pytest.approx(verdict["drift_share"], abs=1e-6)
        assert monitor["drift"]["scores"] == pytest.approx(verdict["scores"], abs=1e-6)
        assert set(verdict["scores"]) == set(DRIFT_COLUMNS)
        assert monitor["prediction_drift"]["score"] is not None  # the monitor's own metrics ride along
    assert stage["batches"]["plots"]["drift_detected"] and not stage["batches"]["reviews"]["drift_detected"]

    # The continuous monitor's full report (with the NLTK descriptors): the shared columns score the same.
    full = read_drift(
        run_drift_report(frame(reference), frame(batches["plots"]), drift, Settings()).dict(),
        drift.drift_share,
    )
    assert set(full["drift"]["scores"]) == set(TEXT_DRIFT_COLUMNS)
    shared = {c: full["drift"]["scores"][c] for c in DRIFT_COLUMNS}
    assert shared == pytest.approx(stage["batches"]["plots"]["scores"], abs=1e-6)
