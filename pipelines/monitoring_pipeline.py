"""The continuous monitor as a Kubeflow pipeline, run on a schedule (a recurring run).

    python -m pipelines.monitoring_pipeline --params params.yaml --output pipelines/monitoring_pipeline.yaml

compiles it with the ``monitor`` section of params.yaml as the default ``params``; upload the YAML
and create a recurring run with ``recurring_run_arguments(params)`` (cron ``monitor.schedule_cron``,
one run at a time, no catch-up), or ``schedule(client, ...)`` with a ``kfp.Client``.
"""

import sys
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components.common.params import load_params, to_dict
from monitoring.component import monitor_window

PIPELINE_NAME = "llm-monitoring"
DEFAULT_OUTPUT = "pipelines/monitoring_pipeline.yaml"
# Where the server's prediction log and the evaluation live on a cluster (override per run).
DEFAULT_URIS = {
    "log_uri": "s3://llm-data-lake/prediction_log",
    "evaluation_uri": "s3://llm-data-lake/outputs/evaluate",
}


@dsl.pipeline(
    name=PIPELINE_NAME, description="One window of the prediction log: drift, quality, latency, cost, alerts."
)
def monitoring_pipeline(
    log_uri: str,
    evaluation_uri: str,
    monitor: dict,
    workspace: str = "",
    webhook_url: str = "",
    window_end: str = "",
):
    evaluation = dsl.importer(artifact_uri=evaluation_uri, artifact_class=dsl.Dataset, reimport=False)
    task = monitor_window(
        log_uri=log_uri,
        evaluation=evaluation.output,
        params=monitor,
        workspace=workspace,
        webhook_url=webhook_url,
        window_end=window_end,
    )
    task.set_caching_options(False)  # every scheduled run must look at the log anew


def pipeline_arguments(params_path: str | Path, **overrides: Any) -> dict[str, Any]:
    """Pipeline parameters: the validated ``monitor`` section plus the URIs."""
    return {**DEFAULT_URIS, "monitor": to_dict(load_params(params_path, "monitor")), **overrides}


def recurring_run_arguments(params: Any) -> dict[str, Any]:
    """Keyword arguments of ``kfp.Client.create_recurring_run`` for the schedule in ``params``
    (a ``monitor`` Params): cron from ``schedule_cron``; one run at a time; missed runs skipped."""
    return {
        "cron_expression": params.schedule_cron,
        "max_concurrency": 1,
        "no_catchup": True,
        "enabled": True,
    }


def schedule(client: Any, package_path: str, params_path: str, experiment_id: str, **overrides: Any) -> Any:
    """Create the recurring run on a Kubeflow cluster (``client``: a ``kfp.Client``)."""
    params = load_params(params_path, "monitor")
    return client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=PIPELINE_NAME,
        pipeline_package_path=package_path,
        params=pipeline_arguments(params_path, **overrides),
        **recurring_run_arguments(params),
    )


def compile_pipeline(params_path: str | Path, output: str | Path) -> Path:
    compiler.Compiler().compile(
        monitoring_pipeline, package_path=str(output), pipeline_parameters=pipeline_arguments(params_path)
    )
    return Path(output)


def main(argv: list[str] | None = None) -> int:
    from pipelines.compile import compile_cli

    doc = __doc__.splitlines()[0]
    return compile_cli(argv, "python -m pipelines.monitoring_pipeline", doc, compile_pipeline, DEFAULT_OUTPUT)


if __name__ == "__main__":
    sys.exit(main())
