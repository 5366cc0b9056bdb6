"""Kubeflow component for clean: the same Beam pipeline and entry as ``python -m components.clean``."""

from kfp.dsl import Dataset, Input, Metrics, Output

from components.common.kfp import stage_component


@stage_component
def clean(data: Input[Dataset], params: dict, cleaned: Output[Dataset], metrics: Output[Metrics]):
    """ingest's corpus.jsonl -> documents/, dropped/, rejected/, report.json in ``cleaned``; the
    task's texts (task.jsonl) and the QA valid/test passages (qa.jsonl) decontaminate it."""
    from components.common import artifacts as a
    from components.common.entry import stage_params
    from components.common.kfp import artifact_location, enter

    # A distributed runner's workers (Flink, Spark, Dataflow) reach the artifacts' object-store
    # URIs, not this pod's local paths (Params.distributed decides).
    remote = stage_params("clean", params).distributed
    enter(
        "clean",
        params,
        metrics,
        inputs=[data],
        outputs=[cleaned],
        input=a.path(artifact_location(data, remote), a.CORPUS),
        decontaminate=[a.path(artifact_location(data, remote), name) for name in (a.TASK, a.QA)],
        output=artifact_location(cleaned, remote),
    )
