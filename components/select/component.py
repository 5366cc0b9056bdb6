"""Kubeflow component for select: the same entry (and gate) as ``python -m components.select``."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def select(
    evaluation: Input[Dataset],
    finetuned: Input[Model],
    variants: Input[Model],
    sft: Input[Model],
    params: dict,
    promoted: str,
    selection: Output[Model],
    metrics: Output[Metrics],
):
    """Choose under the params' constraints; ``selection`` holds ``model/`` (what deploy bundles),
    decision.json / decision.md / MODEL_CARD.md, and ``generator/`` (the chosen generator, or
    its NOT_SHIPPED.json reason) under ``select.generative``. ``promoted``: path of the promotion record on a
    volume the pod mounts ('' = no gate); a regression fails the task with the gate's message."""
    from components.common.kfp import enter

    enter(
        "select",
        params,
        metrics,
        inputs=[evaluation, finetuned, variants, sft],
        outputs=[selection],
        evaluation=evaluation.path,
        finetuned=finetuned.path,
        variants=variants.path,
        sft=sft.path,
        output=selection.path,
        promoted=promoted,
    )
