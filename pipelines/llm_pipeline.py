"""The DAG as a Kubeflow Pipelines v2 pipeline (no `from __future__ import annotations` here: kfp
reads the pipeline signature's annotations as types).

Each pipeline parameter named like a stage (``ingest``, ``clean`` ...) carries that stage's
params.yaml section as a dict; its default is filled from params.yaml through the same strict
loader, and each component validates its dict again with it at run time. ``costs`` carries the
``monitoring`` section's ``prices`` and ``training_window`` for select's return-on-investment
figures (the same dict ``components.common.entry.stage_costs`` reads from the file under DVC).
Cluster settings (image, secret, PVC, shared memory, retries) come from pipelines/cluster.yaml;
accelerators from the ``pretrain``, ``finetune`` and ``sft`` sections.

deploy writes the release's KServe InferenceService into its output artifact (storage URI: that
artifact's own URI); ``apply_inference_service=True`` adds a step that applies it to the cluster
(off by default: a run then only produces and records the manifest).
"""

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from kfp import dsl, kubernetes

from components.clean import component as clean_c
from components.compress import component as compress_c
from components.deploy import component as deploy_c
from components.evaluate import component as evaluate_c
from components.finetune import component as finetune_c
from components.ingest import component as ingest_c
from components.monitor import component as monitor_c
from components.pretrain import component as pretrain_c
from components.report import component as report_c
from components.select import component as select_c
from components.sft import component as sft_c
from components.tokenize import component as tokenize_c
from pipelines.cluster import Cluster

PIPELINE_NAME = "llm-production-line"
# Where the served model logs its predictions: the monitoring pipeline's default log_uri, and
# dvc.yaml's kserve.prediction_log (a test keeps the three equal).
PREDICTION_LOG_URI = "s3://llm-data-lake/prediction_log"
DESCRIPTION = (
    "Raw text to a monitored sentiment model: ingest, Beam clean, tokenize, megatron-core pretrain, "
    "finetune, compress, evaluate, select (gate), deploy (release bundle), Evidently monitor, run report."
)


def _data_lake_step(task: dsl.PipelineTask, cluster: Cluster) -> None:
    """Steps that read the data lake: credentials from a secret, retries for transient I/O errors."""
    kubernetes.use_secret_as_env(
        task,
        secret_name=cluster.data_lake_secret,
        secret_key_to_env={k: k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")},
        optional=True,
    )
    task.set_retry(
        num_retries=cluster.io_retries, backoff_duration=cluster.io_retry_backoff, backoff_factor=2.0
    )


def _training_step(task: dsl.PipelineTask, stage_params: Any, cluster: Cluster) -> None:
    """Training pods: accelerators from the stage's params, in-memory /dev/shm, the checkpoint PVC."""
    if stage_params.accelerator_count > 0:
        task.set_accelerator_type(stage_params.accelerator_type)
        task.set_accelerator_limit(stage_params.accelerator_count)
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=cluster.shm_size
    )
    kubernetes.mount_pvc(task, pvc_name=cluster.checkpoint_pvc, mount_path=cluster.checkpoint_mount)


STAGE_COMPONENTS = (
    ingest_c.ingest,
    clean_c.clean,
    tokenize_c.tokenize,
    pretrain_c.pretrain,
    pretrain_c.pretrain_pytorchjob,
    finetune_c.finetune,
    sft_c.sft,
    compress_c.compress,
    evaluate_c.evaluate,
    select_c.select,
    deploy_c.deploy,
    deploy_c.deploy_inference_service,
    monitor_c.monitor,
    report_c.report,
)


def stage_ops(image: str) -> SimpleNamespace:
    """Every stage's KFP component, running in ``image`` (``ops.clean(...)`` ...)."""
    return SimpleNamespace(**{c.name: c.op(image) for c in STAGE_COMPONENTS})


def build_pipeline(params: dict[str, Any], cluster: Cluster) -> Callable:
    """The pipeline function for these params (typed, from ``load_all``) and cluster settings."""
    ops = stage_ops(cluster.image)

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def llm_pipeline(
        news_uri: str,
        reviews_uri: str,
        ingest: dict,
        clean: dict,
        tokenize: dict,
        pretrain: dict,
        finetune: dict,
        sft: dict,
        compress: dict,
        evaluate: dict,
        select: dict,
        deploy: dict,
        monitor: dict,
        report: dict,
        costs: dict,
        promoted_record: str = "",
        checkpoint_dir: str = "",
        extra_inputs: list = [],  # noqa: B006 (a KFP list parameter's default; never mutated)
        prediction_log_uri: str = PREDICTION_LOG_URI,
        apply_inference_service: bool = False,
        feedback_uri: str = "",
    ):
        # feedback_uri: the data flywheel's harvest folder in the lake (monitoring.flywheel); the
        # monitor's retraining run passes it, a run from the UI may leave it empty.
        ingest_task = ops.ingest(
            news=news_uri, reviews=reviews_uri, inputs=extra_inputs, feedback=feedback_uri, params=ingest
        )
        _data_lake_step(ingest_task, cluster)
        clean_task = ops.clean(data=ingest_task.outputs["data"], params=clean)
        tokenize_task = ops.tokenize(
            cleaned=clean_task.outputs["cleaned"], data=ingest_task.outputs["data"], params=tokenize
        )
        if params["pretrain"].num_nodes > 1:
            # Multi-node: a launcher step creates a Kubeflow Training Operator PyTorchJob (one pod
            # per node, accelerators and /dev/shm on those pods) and waits for it.
            pretrain_task = ops.pretrain_pytorchjob(
                tokenized=tokenize_task.outputs["tokenized"],
                params=pretrain,
                image=cluster.image,
                pvc_name=cluster.checkpoint_pvc,
                pvc_mount=cluster.checkpoint_mount,
                shm_size=cluster.shm_size,
            )
            kubernetes.mount_pvc(
                pretrain_task, pvc_name=cluster.checkpoint_pvc, mount_path=cluster.checkpoint_mount
            )
        else:
            pretrain_task = ops.pretrain(
                tokenized=tokenize_task.outputs["tokenized"], params=pretrain, checkpoint_dir=checkpoint_dir
            )
            _training_step(pretrain_task, params["pretrain"], cluster)
        finetune_task = ops.finetune(
            pretrained=pretrain_task.outputs["pretrained"],
            tokenized=tokenize_task.outputs["tokenized"],
            data=ingest_task.outputs["data"],
            params=finetune,
        )
        _training_step(finetune_task, params["finetune"], cluster)
        # Supervised fine-tuning on ingest's QA pairs: the generator folder.
        sft_task = ops.sft(
            pretrained=pretrain_task.outputs["pretrained"],
            tokenized=tokenize_task.outputs["tokenized"],
            data=ingest_task.outputs["data"],
            params=sft,
        )
        _training_step(sft_task, params["sft"], cluster)
        compress_task = ops.compress(
            finetuned=finetune_task.outputs["finetuned"],
            tokenized=tokenize_task.outputs["tokenized"],
            data=ingest_task.outputs["data"],
            params=compress,
        )
        evaluate_task = ops.evaluate(
            pretrained=pretrain_task.outputs["pretrained"],
            tokenized=tokenize_task.outputs["tokenized"],
            finetuned=finetune_task.outputs["finetuned"],
            variants=compress_task.outputs["variants"],
            data=ingest_task.outputs["data"],
            sft=sft_task.outputs["generator"],
            params=evaluate,
        )
        select_task = ops.select(
            evaluation=evaluate_task.outputs["evaluation"],
            finetuned=finetune_task.outputs["finetuned"],
            variants=compress_task.outputs["variants"],
            sft=sft_task.outputs["generator"],
            pretrained=pretrain_task.outputs["pretrained"],
            params=select,
            costs=costs,
            promoted=promoted_record,
        )
        # The promotion record outlives runs: it sits on the shared volume.
        kubernetes.mount_pvc(
            select_task, pvc_name=cluster.checkpoint_pvc, mount_path=cluster.checkpoint_mount
        )
        select_task.set_caching_options(False)  # the gate must compare against the record as it is now
        deploy_task = ops.deploy(
            selection=select_task.outputs["selection"],
            data=ingest_task.outputs["data"],
            params=deploy,
            image=cluster.image,
            prediction_log=prediction_log_uri,
            data_lake_secret=cluster.data_lake_secret,
        )
        with dsl.If(apply_inference_service == True, name="apply-inference-service"):  # noqa: E712 (a KFP condition)
            # Not cached: applying is an action on the cluster as it is now.
            ops.deploy_inference_service(release=deploy_task.outputs["release"]).set_caching_options(False)
        monitor_task = ops.monitor(
            evaluation=evaluate_task.outputs["evaluation"], data=ingest_task.outputs["data"], params=monitor
        )
        # The last step: one page of the whole run (the UI shows its ``page`` artifact). Not cached:
        # it shows the run records of this run's steps.
        ops.report(
            data=ingest_task.outputs["data"],
            cleaned=clean_task.outputs["cleaned"],
            tokenized=tokenize_task.outputs["tokenized"],
            pretrained=pretrain_task.outputs["pretrained"],
            finetuned=finetune_task.outputs["finetuned"],
            generator=sft_task.outputs["generator"],
            variants=compress_task.outputs["variants"],
            evaluation=evaluate_task.outputs["evaluation"],
            selection=select_task.outputs["selection"],
            release=deploy_task.outputs["release"],
            reports=monitor_task.outputs["reports"],
            params=report,
        ).set_caching_options(False)
        # Every other step is deterministic for its inputs and params (DESIGN rule 8): cache them, so
        # a rerun with one changed parameter reruns only the steps downstream of it.
        for task in (
            ingest_task,
            clean_task,
            tokenize_task,
            pretrain_task,
            finetune_task,
            sft_task,
            compress_task,
            evaluate_task,
            deploy_task,
            monitor_task,
        ):
            task.set_caching_options(True)

    return llm_pipeline
