"""Kubeflow components for pretrain (megatron-core GPT): one pod, or a multi-node PyTorchJob."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def pretrain(
    tokenized: Input[Dataset],
    params: dict,
    pretrained: Output[Model],
    metrics: Output[Metrics],
    checkpoint_dir: str = "",
):
    """tokenize's indexed datasets -> model.json, checkpoint/, loss.csv, steps.csv in ``pretrained``.

    One pod; torchrun inside it when tp*pp*dp > 1. ``checkpoint_dir``: where resumable
    checkpoints go (a PVC path, e.g. /mnt/checkpoints/pretrain, so a retried task resumes);
    "" = beside the output artifact.
    """
    from components.common.kfp import enter

    enter(
        "pretrain",
        params,
        metrics,
        inputs=[tokenized],
        outputs=[pretrained],
        tokenized=tokenized.path,
        output=pretrained.path,
        checkpoint_dir=checkpoint_dir,
    )


@stage_component
def pretrain_pytorchjob(
    tokenized: Input[Dataset],
    params: dict,
    pretrained: Output[Model],
    metrics: Output[Metrics],
    image: str = "",
    pvc_name: str = "llm-checkpoints",
    pvc_mount: str = "/mnt/checkpoints",
    shm_size: str = "16Gi",
    namespace: str = "",
    timeout_s: int = 604800,
):
    """The same training as ``pretrain``, on ``params.num_nodes`` pods: creates a Kubeflow
    Training Operator PyTorchJob and waits for it (at most ``timeout_s`` seconds).

    ``image``: the (CUDA) project image of the job's pods; required, the pipeline passes its
    cluster image. This task itself needs no accelerator, but the PVC ``pvc_name`` mounted at
    ``pvc_mount`` (ReadWriteMany: the job's pods mount it too) and a service account allowed to
    create and get ``pytorchjobs.kubeflow.org``.

    Every pod of the job runs ``python -m components.pretrain``, the stage's command-line door;
    this launcher step only creates the job and waits (on the DVC path torchrun is the launcher).
    """
    from components.common.entry import setup_logging, stage_params
    from components.common.kfp import log_metrics
    from components.pretrain.pytorchjob import run_pytorchjob

    setup_logging()

    log_metrics(
        metrics,
        run_pytorchjob(
            tokenized.path,
            pretrained.path,
            stage_params("pretrain", params),
            image=image,
            pvc_name=pvc_name,
            pvc_mount=pvc_mount,
            shm_size=shm_size,
            namespace=namespace,
            timeout_s=timeout_s,
        ),
    )
