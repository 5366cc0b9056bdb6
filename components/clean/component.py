"""Kubeflow component for clean: the same Beam pipeline as ``python -m components.clean``."""

from kfp.dsl import Dataset, Input, Metrics, Output

from components.common.kfp import stage_component


@stage_component
def clean(data: Input[Dataset], params: dict, cleaned: Output[Dataset], metrics: Output[Metrics]):
    """ingest's corpus.jsonl -> documents/, dropped/, rejected/, report.json in ``cleaned``."""
    import os

    from components.clean.core import run
    from components.common.kfp import log_metrics, stage_params

    corpus = os.path.join(data.path, "corpus.jsonl")
    task = os.path.join(data.path, "task.jsonl")  # evaluation texts: decontamination
    result = run(input=corpus, output=cleaned.path, params=stage_params("clean", params), decontaminate=task)
    log_metrics(metrics, result)
