"""Kubeflow component for tokenize: the same entry as ``python -m components.tokenize``."""

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
    from components.common import artifacts as a
    from components.common.kfp import enter

    enter(
        "tokenize",
        params,
        metrics,
        inputs=[cleaned, data],
        outputs=[tokenized],
        input=a.path(cleaned, a.DOCUMENTS),
        task=a.path(data, a.TASK),
        output=tokenized.path,
    )
