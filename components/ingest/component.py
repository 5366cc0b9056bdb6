"""Kubeflow component for ingest: arguments in, ``components.ingest.core.run`` does the work."""

from kfp.dsl import Dataset, Metrics, Output

from components.common.kfp import stage_component


@stage_component
def ingest(news: str, reviews: str, params: dict, data: Output[Dataset], metrics: Output[Metrics]):
    """Raw URIs (local, s3://, gs://) -> corpus.jsonl, task.jsonl and batches/ in ``data``."""
    from components.common.kfp import log_metrics, stage_params
    from components.ingest.core import run

    log_metrics(
        metrics,
        run(news=news, reviews=reviews, inputs=[], output=data.path, params=stage_params("ingest", params)),
    )
