"""Kubeflow component for finetune: the same entry as ``python -m components.finetune``."""

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
    from components.common import artifacts as a
    from components.common.kfp import enter

    enter(
        "finetune",
        params,
        metrics,
        inputs=[pretrained, tokenized, data],
        outputs=[finetuned],
        pretrained=pretrained.path,
        tokenized=tokenized.path,
        task=a.path(data, a.TASK),
        output=finetuned.path,
    )
