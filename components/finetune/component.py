"""Kubeflow component for finetune (sentiment classifier on the pretrained GPT)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def finetune(
    pretrained: Input[Model],
    tokenized: Input[Dataset],
    data: Input[Dataset],
    params: dict,
    finetuned: Output[Model],
    metrics: Output[Metrics],
):
    """The pretrained checkpoint + ingest's task.jsonl -> the classifier in ``finetuned``."""
    import os

    from components.common.kfp import log_metrics, stage_params
    from components.finetune.core import run

    result = run(
        pretrained=pretrained.path,
        tokenizer=tokenized.path,
        task=os.path.join(data.path, "task.jsonl"),
        output=finetuned.path,
        params=stage_params("finetune", params),
    )
    log_metrics(metrics, result)
