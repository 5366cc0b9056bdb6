"""Kubeflow component for deploy: the release bundle the model server mounts."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def deploy(
    selection: Input[Model],
    data: Input[Dataset],
    params: dict,
    release: Output[Model],
    metrics: Output[Metrics],
):
    """The selected model -> a smoke-tested bundle (``model/`` + ``release.json``) in ``release``."""
    import os

    from components.common.kfp import log_metrics, stage_params
    from components.deploy.core import run

    model = os.path.join(selection.path, "model")
    reference = os.path.join(selection.path, "predictions.jsonl")
    result = run(model, release.path, stage_params("deploy", params), reference=reference, dataset=data.path)
    release.metadata["dataset_version"] = data.metadata.get("dataset_version", "")
    log_metrics(metrics, result)
