"""Kubeflow component for select: the same entry (and gate) as ``python -m components.select``."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def select(
    evaluation: Input[Dataset],
    finetuned: Input[Model],
    variants: Input[Model],
    sft: Input[Model],
    pretrained: Input[Model],
    params: dict,
    costs: dict,
    promoted: str,
    selection: Output[Model],
    metrics: Output[Metrics],
):
    """Choose under the params' constraints; ``selection`` holds ``model/`` (what deploy bundles),
    decision.json / decision.md / MODEL_CARD.md, and ``generator/`` (the chosen generator, or
    its NOT_SHIPPED.json reason) under ``select.generative``. ``promoted``: path of the promotion record on a
    volume the pod mounts ('' = no gate); a regression fails the task with the gate's message.
    ``pretrained``: pretrain's output (training hours and start); ``costs``: the pipeline's
    ``{prices, training_window}`` (params.yaml's ``monitoring`` section), for the ROI figures."""
    from components.common.kfp import enter

    enter(
        "select",
        params,
        metrics,
        inputs=[evaluation, finetuned, variants, sft, pretrained],
        outputs=[selection],
        evaluation=evaluation.path,
        finetuned=finetuned.path,
        variants=variants.path,
        sft=sft.path,
        pretrained=pretrained.path,
        output=selection.path,
        promoted=promoted,
        costs=costs,
    )
