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
    release_uri: str = "",
    workspace: str = "",
    webhook_url: str = "",
    window_end: str = "",
    fail_on_alert: bool = True,
    on_alert: str = "off",
    kfp_host: str = "",
    training_package: str = "pipelines/llm_pipeline.yaml",
    feedback_uri: str = "",
    ingest_uri: str = "",
    force_retrain: bool = False,
):
    """Judge the window of ``monitoring.window_minutes`` ending at ``window_end`` (ISO-8601; empty =
    the run's start; rounded down to a whole window) of the prediction log at ``log_uri``
    (s3://... on a cluster) against evaluate's predictions (and its generations, when the window has
    generations and the evaluation has generations.jsonl), with the drift thresholds of
    ``monitor`` and the settings of ``monitoring`` (params.yaml sections). ``pretrain_uri`` /
    ``finetune_uri``: those stages' output folders (their metrics.json give the training cost;
    empty = unknown). ``release_uri``: deploy's output folder (its roi.json: the release's training
    cost and USD per macro-F1 point beside the live cost; empty = none). ``workspace``: an
    Evidently workspace path on shared storage (empty = none).
    ``alerts`` holds the alert JSON; with ``fail_on_alert`` the task fails when an alert fired, so
    the run shows red in the UI.

    ``on_alert`` ``retrain``: an alert of ``monitoring.retrain.on_alerts`` harvests the labelled
    predictions into ``feedback_uri`` (the lake's flywheel folder) and starts a run of the training
    pipeline ``training_package`` (compiled, in the image) on the Kubeflow Pipelines API at
    ``kfp_host`` with that folder as its ``feedback_uri`` (``monitoring.retrain``), inside
    ``monitoring.training_window`` unless ``force_retrain``; ``ingest_uri``: the ingest output of
    the trained data version (its dataset.json tells which harvest files are new)."""
    from components.common import artifacts as a
    from components.common.entry import stage_params
    from components.common.kfp import log_metrics
    from monitoring.alerts import raise_on_alert
    from monitoring.loop import ALERTS_FILE, REPORT_HTML, copy_file, headline_metrics, run_scheduled
    from monitoring.retrain import KubeflowTarget

    target = None
    if on_alert == "retrain":
        target = KubeflowTarget(
            host=kfp_host,
            package=training_package,
            feedback=feedback_uri,
            ingest=ingest_uri,
            pretrain=pretrain_uri,
            finetune=finetune_uri,
        )

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
        release=release_uri,
        on_alert=on_alert,
        retrain_target=target,
        force=force_retrain,
    )
    copy_file(folder / REPORT_HTML, report.path)
    copy_file(folder / ALERTS_FILE, alerts.path)
    log_metrics(metrics, headline_metrics(summary))
    if fail_on_alert:
        raise_on_alert(folder / ALERTS_FILE)
