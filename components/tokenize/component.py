"""Kubeflow component for tokenize."""

from kfp.dsl import Dataset, Input, Metrics, Output

from components.common.kfp import stage_component


@stage_component
def tokenize(
    cleaned: Input[Dataset],
    data: Input[Dataset],
    params: dict,
    tokenized: Output[Dataset],
    metrics: Output[Metrics],
):
    """clean's documents/ (+ ingest's task.jsonl train and valid texts, the task source) ->
    tokenizer.json and megatron indexed datasets in ``tokenized``."""
    import os

    from components.common.kfp import log_metrics, stage_params
    from components.tokenize.core import run

    documents = os.path.join(cleaned.path, "documents")
    task = os.path.join(data.path, "task.jsonl")
    result = run(input=documents, output=tokenized.path, params=stage_params("tokenize", params), task=task)
    log_metrics(metrics, result)
