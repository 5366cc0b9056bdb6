"""Kubeflow components for deploy: the same entry as ``python -m components.deploy``, and the
optional step that applies the release's InferenceService to the cluster."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def deploy(
    selection: Input[Model],
    data: Input[Dataset],
    params: dict,
    release: Output[Model],
    metrics: Output[Metrics],
    image: str = "",
    prediction_log: str = "",
    data_lake_secret: str = "",
):
    """The selected model -> a smoke-tested bundle (``model/`` + ``release.json``; ``generator/``
    when select shipped one) and its KServe
    InferenceService (``inference_service.yaml``) in ``release``, whose storage URI is the
    artifact's own place in the object store (``release.uri``);
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
        generator=a.path(selection, a.GENERATOR_DIR),
        generations=a.path(selection, a.GENERATIONS),
        decision=a.path(selection, a.DECISION_JSON),
        dataset=data.path,
        output=release.path,
        image=image,
        storage_uri=release.uri,
        prediction_log=prediction_log,
        data_lake_secret=data_lake_secret,
    )


@stage_component
def deploy_inference_service(release: Input[Model], namespace: str = ""):
    """Create (or replace) the release's InferenceService in ``namespace`` ("" = this pod's).
    Needs a service account allowed to get, create and update
    ``inferenceservices.serving.kserve.io``."""
    from components.common import artifacts as a
    from components.common.entry import setup_logging
    from components.deploy.kserve import apply_inference_service

    setup_logging()
    apply_inference_service(a.path(release, a.INFERENCE_SERVICE), namespace=namespace)
