"""Kubeflow component of the continuous monitor: one window of the prediction log per run.

Scheduled as a recurring run (``pipelines.monitoring_pipeline``, cron from
``monitor.schedule_cron``). The body only translates arguments; the work is
``monitoring.loop.run_once``, the same call as ``python -m monitoring --once``.
"""

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.common.kfp import stage_component


@stage_component
def monitor_window(
    log_uri: str,
    evaluation: Input[Dataset],
    params: dict,
    reports: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    alerts: Output[Artifact],
    workspace: str = "",
    webhook_url: str = "",
    window_end: str = "",
    fail_on_alert: bool = True,
):
    """Judge the window of ``monitor.window_minutes`` ending at ``window_end`` (ISO-8601; empty =
    the run's start, rounded down to a whole window) of the prediction log at ``log_uri``
    (s3://... on a cluster) against evaluate's predictions. ``workspace``: an Evidently workspace
    path on shared storage (empty = none). ``alerts`` holds the alert JSON; with
    ``fail_on_alert`` the task fails when an alert fired, so the run shows red in the UI."""
    import json
    import os
    import shutil
    from datetime import UTC, datetime
    from pathlib import Path

    from components.common.kfp import log_metrics, stage_params
    from monitoring.loop import ALERTS_FILE, run_once, window_end_floor
    from monitoring.window import parse_time

    monitor_params = stage_params("monitor", params)
    if window_end:
        end = parse_time(window_end)
    else:
        end = window_end_floor(datetime.now(UTC), monitor_params.window_minutes)
    summary, folder = run_once(
        log_uri,
        os.path.join(evaluation.path, "predictions.jsonl"),
        reports.path,
        monitor_params,
        end,
        workspace=workspace or None,
        webhook=webhook_url or None,
    )
    pages = sorted(Path(folder).glob("*/*/report.html"))
    parts = ["<!doctype html><html><body>"]
    for page in pages:
        parts.append(f"<h1>{page.parent.parent.name}: {page.parent.name}</h1>")
        src = page.read_text(encoding="utf-8").replace("&", "&amp;").replace('"', "&quot;")
        parts.append(f'<iframe srcdoc="{src}" style="width:100%;height:900px;border:0"></iframe>')
    parts.append("</body></html>")
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text("\n".join(parts), encoding="utf-8")
    log_metrics(
        metrics,
        {
            k: v
            for k, v in summary.items()
            if k in ("rows", "requests", "alerts", "versions", "training_cost")
        },
    )
    Path(alerts.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(folder) / ALERTS_FILE, alerts.path)
    if fail_on_alert and summary["alerts"]:
        payload = json.loads(Path(alerts.path).read_text())
        raise RuntimeError("monitoring alerts: " + "; ".join(a["message"] for a in payload["alerts"]))
