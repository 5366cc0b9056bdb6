"""Kubeflow component for monitor (Evidently drift reports)."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.common.kfp import stage_component


@stage_component
def monitor(
    evaluation: Input[Dataset],
    data: Input[Dataset],
    params: dict,
    reports: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
):
    """Each batch in ingest's batches/ against the evaluated test split; ``report`` is shown in the UI."""
    import os

    from components.common.kfp import log_metrics, publish_html, stage_params
    from components.monitor.core import run

    result = run(
        reference=os.path.join(evaluation.path, "predictions.jsonl"),
        batches=os.path.join(data.path, "batches"),
        output=reports.path,
        params=stage_params("monitor", params),
    )
    publish_html(reports.path, report.path)
    log_metrics(metrics, result)
