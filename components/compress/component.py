"""Kubeflow component for compress: the same entry as ``python -m components.compress``."""

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
    from components.common import artifacts as a
    from components.common.kfp import enter

    enter(
        "compress",
        params,
        metrics,
        inputs=[finetuned, tokenized, data],
        outputs=[variants],
        finetuned=finetuned.path,
        tokenized=tokenized.path,
        task=a.path(data, a.TASK),
        output=variants.path,
    )
