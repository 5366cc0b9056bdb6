"""Upload the compiled pipeline to a Kubeflow Pipelines host and start a run (``make kfp-submit``).

    KFP_HOST=https://kubeflow.example.org/pipeline python -m pipelines.submit [--params params.yaml]
        [--experiment llm-production-line] [--no-run] [--monitor-schedule]

The host comes from the KFP_HOST environment variable (with KFP_NAMESPACE for multi-user
installs; credentials as kfp.Client finds them, e.g. a kubeconfig or KF_PIPELINES_SA_TOKEN_PATH).
The pipeline is compiled fresh from params.yaml, uploaded as a new version of the pipeline named
``llm-production-line`` (created on first use), and a run is started in the experiment.
With ``--monitor-schedule`` the monitoring pipeline is also registered as a recurring run with the
cron schedule from the ``monitor`` params section.

A run is a training run: with ``monitoring.training_window`` enabled, one started outside the
off-peak window is refused before the host is contacted (the message shows the window, when it
opens and the cost estimate at both prices) or waits for the opening (``outside: wait``), unless
``--force`` (``llm.costs``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from components.common.params import ParamsError, load_all
from llm.costs import OutsideWindow, check_window, wait_for_window
from pipelines.compile import compile_pipeline, pipeline_arguments
from pipelines.llm_pipeline import PIPELINE_NAME


@dataclass
class Submission:
    """What will be sent to the KFP API: derived from params alone, so it is testable offline."""

    host: str
    namespace: str | None
    experiment: str
    version: str
    arguments: dict[str, Any] = field(default_factory=dict)


def plan(params_path: str | Path, experiment: str, env: dict[str, str] | None = None) -> Submission:
    """Validate params and the environment before anything is uploaded."""
    env = dict(os.environ) if env is None else env
    host = env.get("KFP_HOST", "").strip()
    if not host:
        raise SystemExit(
            "error: KFP_HOST is not set (the Kubeflow Pipelines API endpoint, e.g. https://host/pipeline)"
        )
    load_all(params_path)  # refuse a bad params file before contacting the host
    version = f"{PIPELINE_NAME}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    return Submission(
        host, env.get("KFP_NAMESPACE") or None, experiment, version, pipeline_arguments(params_path)
    )


def submit(
    sub: Submission, params_path: str | Path, start_run: bool = True, monitor_schedule: bool = False
) -> None:
    import kfp

    from pipelines import monitoring_pipeline

    # kfp warns on every Client that it needs a v2 server; the pipelines here are v2 already.
    warnings.filterwarnings(
        "ignore", message="This client only works with Kubeflow Pipeline v2", category=FutureWarning
    )
    client = kfp.Client(host=sub.host, namespace=sub.namespace)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(params_path, Path(tmp) / "pipeline.yaml")
        pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(str(package), pipeline_name=PIPELINE_NAME).pipeline_id
            print(f"uploaded pipeline {PIPELINE_NAME} ({pipeline_id})")
        else:
            client.upload_pipeline_version(str(package), sub.version, pipeline_id=pipeline_id)
            print(f"uploaded version {sub.version} of {PIPELINE_NAME}")
        if start_run:
            run = client.create_run_from_pipeline_package(
                str(package),
                arguments=sub.arguments,
                run_name=sub.version,
                experiment_name=sub.experiment,
                namespace=sub.namespace,
                enable_caching=True,
            )
            print(f"started run {run.run_id}: {sub.host.rstrip('/')}/#/runs/details/{run.run_id}")
        if monitor_schedule:
            experiment = client.create_experiment(sub.experiment, namespace=sub.namespace)
            package = monitoring_pipeline.compile_pipeline(params_path, Path(tmp) / "monitoring.yaml")
            job = monitoring_pipeline.schedule(
                client, str(package), str(params_path), experiment.experiment_id
            )
            print(f"scheduled {monitoring_pipeline.PIPELINE_NAME}: recurring run {job.recurring_run_id}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.submit", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--experiment", default=PIPELINE_NAME)
    parser.add_argument("--no-run", action="store_true", help="upload only")
    parser.add_argument(
        "--force",
        action="store_true",
        help="start the run outside monitoring.training_window (on-peak price)",
    )
    parser.add_argument(
        "--monitor-schedule",
        action="store_true",
        help="also create the monitor's recurring run (cron from params)",
    )
    args = parser.parse_args(argv)
    try:
        sub = plan(args.params, args.experiment)
    except ParamsError as exc:
        print(f"error: {args.params}: {exc}", file=sys.stderr)
        return 2
    if not args.no_run:
        try:
            print(training_window_check(args.params, args.force)["message"])
        except OutsideWindow as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    try:
        submit(sub, args.params, start_run=not args.no_run, monitor_schedule=args.monitor_schedule)
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        print(
            f"error: cannot reach Kubeflow Pipelines at {sub.host}: {unreachable_reason(exc)}",
            file=sys.stderr,
        )
        return 1
    return 0


def training_window_check(
    params_path: str | Path, force: bool, hours_from: str | Path = "outputs"
) -> dict[str, Any]:
    """``llm.costs.check_window`` now, for the run about to start; the estimate from the last local
    training's accelerator-hours (``outputs/pretrain`` and ``outputs/finetune`` metrics.json) when
    there is one. Waits with ``outside: wait``; raises ``OutsideWindow`` when refused."""
    import time

    from monitoring.retrain import LocalTarget, last_training_hours

    settings = load_all(params_path)["monitoring"]
    base = Path(hours_from)
    hours = last_training_hours(
        LocalTarget(base.parent, pretrain=f"{base.name}/pretrain", finetune=f"{base.name}/finetune")
    )
    now = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
    check = check_window(now(), settings.prices, settings.training_window, hours, force)
    if not check["allowed"]:
        print(check["message"], flush=True)
        check = wait_for_window(check, settings.training_window, now, time.sleep)
    return check


def unreachable_reason(exc: BaseException) -> str:
    """The root cause of a connection failure in one line (urllib3 wraps it in a retry error)."""
    reason = getattr(exc, "reason", None) or exc.__cause__ or exc
    text = str(reason)
    # "HTTPConnection(host=..., port=...): Failed to establish a new connection: [Errno 111] ..."
    return text.split(": ", 1)[1] if text.startswith("HTTPConnection") and ": " in text else text


if __name__ == "__main__":
    sys.exit(main())
