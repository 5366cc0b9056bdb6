"""The continuous monitor as a Kubeflow pipeline, run on a schedule (a recurring run).

    python -m pipelines.monitoring_pipeline --params params.yaml --output pipelines/monitoring_pipeline.yaml

compiles it with the ``monitor`` section of params.yaml (the drift thresholds, shared with the
DAG's monitor stage) and the ``monitoring`` section (window, tests, alerts, prices, cron) as the
default ``monitor`` and ``monitoring`` parameters; upload the YAML and create a recurring run with
``recurring_run_arguments(settings)`` (cron ``monitoring.schedule_cron``, one run at a time, no
catch-up), or ``schedule(client, ...)`` with a ``kfp.Client``. (No ``from __future__ import
annotations`` here: kfp reads the pipeline signature's annotations as types.)
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components.common.params import load_all, load_params, to_dict
from monitoring.component import monitor_window

PIPELINE_NAME = "llm-monitoring"
DEFAULT_OUTPUT = "pipelines/monitoring_pipeline.yaml"
# Where the server's prediction log and the DAG's outputs live on a cluster (override per run):
# evaluate's predictions are the reference; pretrain's and finetune's metrics.json give the
# training cost.
DEFAULT_URIS = {
    "log_uri": "s3://llm-data-lake/prediction_log",
    "evaluation_uri": "s3://llm-data-lake/outputs/evaluate",
    "pretrain_uri": "s3://llm-data-lake/outputs/pretrain",
    "finetune_uri": "s3://llm-data-lake/outputs/finetune",
    # The release bundle (its roi.json: training cost and USD per macro-F1 point of the release).
    "release_uri": "s3://llm-data-lake/outputs/deploy",
    # The data flywheel (on_alert = retrain): the harvest folder, and the trained data version.
    "feedback_uri": "s3://llm-data-lake/feedback",
    "ingest_uri": "s3://llm-data-lake/outputs/ingest",
}
# The Kubeflow Pipelines API inside the cluster (the ml-pipeline service of a standard install).
IN_CLUSTER_KFP_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"


def build_pipeline(image: str) -> Callable:
    """The pipeline function, its component running in ``image`` (pipelines/cluster.yaml)."""
    window_op = monitor_window.op(image)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="One window of the prediction log: drift, quality, latency, cost, alerts.",
    )
    def monitoring_pipeline(
        log_uri: str,
        evaluation_uri: str,
        pretrain_uri: str,
        finetune_uri: str,
        release_uri: str,
        monitor: dict,
        monitoring: dict,
        feedback_uri: str,
        ingest_uri: str,
        workspace: str = "",
        webhook_url: str = "",
        window_end: str = "",
        on_alert: str = "off",
        kfp_host: str = IN_CLUSTER_KFP_HOST,
        force_retrain: bool = False,
    ):
        evaluation = dsl.importer(artifact_uri=evaluation_uri, artifact_class=dsl.Dataset, reimport=False)
        task = window_op(
            log_uri=log_uri,
            evaluation=evaluation.output,
            monitor=monitor,
            monitoring=monitoring,
            pretrain_uri=pretrain_uri,
            finetune_uri=finetune_uri,
            release_uri=release_uri,
            workspace=workspace,
            webhook_url=webhook_url,
            window_end=window_end,
            on_alert=on_alert,
            kfp_host=kfp_host,
            feedback_uri=feedback_uri,
            ingest_uri=ingest_uri,
            force_retrain=force_retrain,
        )
        task.set_caching_options(False)  # every scheduled run must look at the log anew

    return monitoring_pipeline


def pipeline_arguments(params_path: str | Path, **overrides: Any) -> dict[str, Any]:
    """Pipeline parameters: the validated ``monitor`` and ``monitoring`` sections plus the URIs."""
    sections = load_all(params_path)
    return {
        **DEFAULT_URIS,
        "monitor": to_dict(sections["monitor"]),
        "monitoring": to_dict(sections["monitoring"]),
        **overrides,
    }


def recurring_run_arguments(settings: Any) -> dict[str, Any]:
    """Keyword arguments of ``kfp.Client.create_recurring_run`` for the schedule in ``settings``
    (the ``monitoring`` Settings): cron from ``schedule_cron``; one run at a time; missed runs
    skipped."""
    return {
        "cron_expression": settings.schedule_cron,
        "max_concurrency": 1,
        "no_catchup": True,
        "enabled": True,
    }


def schedule(client: Any, package_path: str, params_path: str, experiment_id: str, **overrides: Any) -> Any:
    """Create the recurring run on a Kubeflow cluster (``client``: a ``kfp.Client``)."""
    settings = load_params(params_path, "monitoring")
    return client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=PIPELINE_NAME,
        pipeline_package_path=package_path,
        params=pipeline_arguments(params_path, **overrides),
        **recurring_run_arguments(settings),
    )


def compile_pipeline(params_path: str | Path, output: str | Path) -> Path:
    """Compile to ``output`` with the defaults of ``params_path``; same inputs, same bytes."""
    from pipelines.cluster import load_cluster
    from pipelines.compile import stabilize

    arguments = pipeline_arguments(params_path)
    compiler.Compiler().compile(
        build_pipeline(load_cluster().image), package_path=str(output), pipeline_parameters=arguments
    )
    return stabilize(output, arguments)


def main(argv: list[str] | None = None) -> int:
    from pipelines.compile import compile_cli

    doc = __doc__.splitlines()[0]
    return compile_cli(argv, "python -m pipelines.monitoring_pipeline", doc, compile_pipeline, DEFAULT_OUTPUT)


if __name__ == "__main__":
    sys.exit(main())
