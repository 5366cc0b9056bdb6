"""Kubeflow component for deploy: the same entry as ``python -m components.deploy``."""

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
    """The selected model -> a smoke-tested bundle (``model/`` + ``release.json``) in ``release``;
    ``release.metadata["dataset_version"]``: the version of the data it was trained on."""
    from components.common import artifacts as a
    from components.common.kfp import enter

    enter(
        "deploy",
        params,
        metrics,
        inputs=[data, selection],
        outputs=[release],
        model=a.path(selection, a.MODEL_DIR),
        reference=a.path(selection, a.PREDICTIONS),
        dataset=data.path,
        output=release.path,
    )
