"""Kubeflow component of the continuous monitor: one window of the prediction log per run.

Scheduled as a recurring run (``pipelines.monitoring_pipeline``, cron from
``monitoring.schedule_cron``). The body only translates arguments; the work is
``monitoring.loop.run_scheduled``, the same call as ``python -m monitoring --once``; the body then
copies the run's page, alert JSON and headline figures into its output artifacts.
"""

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.common.kfp import stage_component


@stage_component
def monitor_window(
    log_uri: str,
    evaluation: Input[Dataset],
    monitor: dict,
    monitoring: dict,
    reports: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    alerts: Output[Artifact],
    pretrain_uri: str = "",
    finetune_uri: str = "",
    workspace: str = "",
    webhook_url: str = "",
    window_end: str = "",
    fail_on_alert: bool = True,
):
    """Judge the window of ``monitoring.window_minutes`` ending at ``window_end`` (ISO-8601; empty =
    the run's start; rounded down to a whole window) of the prediction log at ``log_uri``
    (s3://... on a cluster) against evaluate's predictions (and its generations, when the window has
    generations and the evaluation has generations.jsonl), with the drift thresholds of
    ``monitor`` and the settings of ``monitoring`` (params.yaml sections). ``pretrain_uri`` /
    ``finetune_uri``: those stages' output folders (their metrics.json give the training cost;
    empty = unknown). ``workspace``: an Evidently workspace path on shared storage (empty = none).
    ``alerts`` holds the alert JSON; with ``fail_on_alert`` the task fails when an alert fired, so
    the run shows red in the UI."""
    from components.common import artifacts as a
    from components.common.entry import stage_params
    from components.common.kfp import log_metrics
    from monitoring.alerts import raise_on_alert
    from monitoring.loop import ALERTS_FILE, REPORT_HTML, copy_file, headline_metrics, run_scheduled

    summary, folder = run_scheduled(
        log_uri,
        a.path(evaluation, a.PREDICTIONS),
        reports.path,
        stage_params("monitor", monitor),
        stage_params("monitoring", monitoring),
        window_end,
        workspace=workspace,
        webhook=webhook_url,
        training={"pretrain": pretrain_uri, "finetune": finetune_uri},
        generations_reference=a.path(evaluation, a.GENERATIONS),
    )
    copy_file(folder / REPORT_HTML, report.path)
    copy_file(folder / ALERTS_FILE, alerts.path)
    log_metrics(metrics, headline_metrics(summary))
    if fail_on_alert:
        raise_on_alert(folder / ALERTS_FILE)
