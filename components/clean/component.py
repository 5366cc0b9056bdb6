"""Kubeflow component for clean: the same Beam pipeline and entry as ``python -m components.clean``."""

from kfp.dsl import Dataset, Input, Metrics, Output

from components.common.kfp import stage_component


@stage_component
def clean(data: Input[Dataset], params: dict, cleaned: Output[Dataset], metrics: Output[Metrics]):
    """ingest's corpus.jsonl -> documents/, dropped/, rejected/, report.json in ``cleaned``; the
    task's texts (task.jsonl) decontaminate it."""
    from components.common import artifacts as a
    from components.common.kfp import enter

    enter(
        "clean",
        params,
        metrics,
        inputs=[data],
        outputs=[cleaned],
        input=a.path(data, a.CORPUS),
        decontaminate=a.path(data, a.TASK),
        output=cleaned.path,
    )
