"""Kubeflow component for sft: the same entry as ``python -m components.sft``."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def sft(
    pretrained: Input[Model],
    tokenized: Input[Dataset],
    data: Input[Dataset],
    params: dict,
    generator: Output[Model],
    metrics: Output[Metrics],
):
    """The pretrained checkpoint + ingest's qa.jsonl -> the fine-tuned generator folder in ``generator``."""
    from components.common import artifacts as a
    from components.common.kfp import enter

    enter(
        "sft",
        params,
        metrics,
        inputs=[pretrained, tokenized, data],
        outputs=[generator],
        pretrained=pretrained.path,
        tokenized=tokenized.path,
        pairs=a.path(data, a.QA),
        output=generator.path,
    )
