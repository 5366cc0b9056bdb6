"""Kubeflow component for monitor (Evidently drift reports): the same entry as
``python -m components.monitor``."""

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
    from components.common import artifacts as a
    from components.common.kfp import enter, publish_html

    enter(
        "monitor",
        params,
        metrics,
        inputs=[evaluation, data],
        outputs=[reports],
        reference=a.path(evaluation, a.PREDICTIONS),
        batches=a.path(data, a.BATCHES),
        output=reports.path,
    )
    publish_html(reports.path, report.path)
