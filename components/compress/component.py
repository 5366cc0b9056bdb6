"""Kubeflow component for compress: int8, pruned and distilled variants of the classifier."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def compress(
    finetuned: Input[Model],
    tokenized: Input[Dataset],
    data: Input[Dataset],
    params: dict,
    variants: Output[Model],
    metrics: Output[Metrics],
):
    """The fine-tuned classifier -> one model folder per variant (``int8/``, ``pruned/``, ``distilled/``)."""
    import os

    from components.common.kfp import log_metrics, stage_params
    from components.compress.core import run

    result = run(
        model=finetuned.path,
        tokenizer=tokenized.path,
        task=os.path.join(data.path, "task.jsonl"),
        output=variants.path,
        params=stage_params("compress", params),
    )
    log_metrics(metrics, result)
