"""Kubeflow component for pretrain (megatron-core GPT)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def pretrain(tokenized: Input[Dataset], params: dict, pretrained: Output[Model], metrics: Output[Metrics]):
    """tokenize's indexed datasets -> model.json, checkpoint/, loss.csv in ``pretrained``."""
    from components.common.kfp import log_metrics, stage_params
    from components.pretrain.core import run

    log_metrics(
        metrics, run(data=tokenized.path, output=pretrained.path, params=stage_params("pretrain", params))
    )
