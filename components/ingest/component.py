"""Kubeflow component for ingest: the same entry as ``python -m components.ingest``."""

from kfp.dsl import Dataset, Metrics, Output

from components.common.kfp import stage_component


@stage_component
def ingest(
    news: str,
    reviews: str,
    params: dict,
    data: Output[Dataset],
    metrics: Output[Metrics],
    inputs: list = [],  # noqa: B006 (a KFP list parameter's default; never mutated)
    feedback: str = "",
):
    """Raw URIs (local, s3://, gs://) -> corpus.jsonl, task.jsonl, qa.jsonl and batches/ in ``data``;
    ``inputs``: more document URIs (files or folders), as ``--input`` on the command line;
    ``feedback``: the data flywheel's harvest folder in the data lake ('' = none), as ``--feedback``.
    ``data.metadata["dataset_version"]``: the raw data's content hash."""
    from components.common.kfp import enter

    enter(
        "ingest",
        params,
        metrics,
        outputs=[data],
        news=news,
        reviews=reviews,
        inputs=list(inputs),
        feedback=feedback,
        output=data.path,
    )
