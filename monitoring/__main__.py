"""CLI: the continuous monitor over the server's prediction log.

    python -m monitoring --once [--end 2026-05-01T12:00:00Z] [options]
    python -m monitoring --interval 3600 [--max-runs N] [options]

Options (defaults fit the local layout): ``--log outputs/prediction_log``, ``--reference
outputs/evaluate/predictions.jsonl``, ``--generations-reference outputs/evaluate/generations.jsonl``
(the generations' reference; absent = generations judged without drift), ``--output outputs/live_monitoring/runs`` (one folder per run, named by
the window's end, plus ``alerts.json`` of the latest run), ``--workspace
outputs/live_monitoring/workspace`` (``--no-workspace`` to skip), ``--pretrain outputs/pretrain`` and
``--finetune outputs/finetune`` (training cost), ``--release outputs/deploy`` (roi.json: the
release's return on investment beside the live cost), ``--webhook URL`` (or ``$MONITOR_WEBHOOK_URL``),
``--aligned`` (end windows on a multiple of ``monitoring.window_minutes`` since midnight UTC),
``--on-alert retrain`` (off by default: an alert of ``monitoring.retrain.on_alerts`` harvests the
labelled predictions into the project's feedback folder and retrains with ``dvc repro`` in
``--project``, inside ``monitoring.training_window`` unless ``--force``; monitoring.retrain),
``--params params.yaml`` (the ``monitor`` section: drift thresholds, shared with the DAG's monitor
stage; the ``monitoring`` section: window, tests, alerts, prices; the whole file is validated).

Each run is ``monitoring.loop.run_scheduled``, the call the Kubeflow component makes.

Exit status: 0 no alert, 1 an alert fired (in ``--interval`` mode: in any run), 2 bad params
file. SIGTERM / SIGINT stop an ``--interval`` loop after the run in progress.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime

from components.common.cli import DEFAULT_PARAMS
from components.common.entry import setup_logging
from components.common.params import ParamsError, load_all

WEBHOOK_ENV = "MONITOR_WEBHOOK_URL"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m monitoring", description="Monitor the prediction log: drift, quality, latency, cost."
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="judge one window and exit")
    mode.add_argument("--interval", type=float, metavar="S", help="judge a window every S seconds")
    p.add_argument("--max-runs", type=int, default=None, help="with --interval: stop after N runs")
    p.add_argument("--end", default=None, help="window end, ISO-8601 (default: now); with --once only")
    p.add_argument(
        "--aligned", action="store_true", help="round window ends down to a multiple of window_minutes"
    )
    p.add_argument(
        "--log", default="outputs/prediction_log", help="prediction-log URI (default: %(default)s)"
    )
    p.add_argument(
        "--reference",
        default="outputs/evaluate/predictions.jsonl",
        help="reference JSONL (default: %(default)s)",
    )
    p.add_argument(
        "--generations-reference",
        default="outputs/evaluate/generations.jsonl",
        help="reference generations JSONL (default: %(default)s; absent: no generation drift)",
    )
    p.add_argument(
        "--output", default="outputs/live_monitoring/runs", help="reports folder (default: %(default)s)"
    )
    p.add_argument(
        "--workspace",
        default="outputs/live_monitoring/workspace",
        help="Evidently workspace (default: %(default)s)",
    )
    p.add_argument("--no-workspace", action="store_true", help="do not add snapshots to a workspace")
    p.add_argument(
        "--pretrain", default="outputs/pretrain", help="pretrain output (metrics.json: training cost)"
    )
    p.add_argument(
        "--finetune", default="outputs/finetune", help="finetune output (metrics.json: training cost)"
    )
    p.add_argument(
        "--release",
        default="outputs/deploy",
        help="deploy output (roi.json: the release's training cost and USD per macro-F1 point; default: %(default)s)",
    )
    p.add_argument(
        "--webhook",
        default=os.environ.get(WEBHOOK_ENV),
        help=f"POST alert JSON here (default: ${WEBHOOK_ENV})",
    )
    p.add_argument(
        "--on-alert",
        choices=("off", "retrain"),
        default="off",
        help="retrain: an alert of monitoring.retrain.on_alerts harvests the labelled predictions into "
        "the feedback folder and runs dvc repro in --project (the gate decides, deploy follows a "
        "promotion); default: %(default)s",
    )
    p.add_argument(
        "--project",
        default=".",
        help="with --on-alert retrain: the DVC project to retrain (default: %(default)s)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --on-alert retrain: start the retraining outside monitoring.training_window (on-peak price)",
    )
    p.add_argument("--params", default=DEFAULT_PARAMS, help="params file (default: %(default)s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.end is not None and not args.once:
        parser().error("--end goes with --once")
    setup_logging()
    try:
        sections = load_all(args.params)
    except ParamsError as exc:
        print(f"error: {args.params}: {exc}", file=sys.stderr)
        return 2
    drift_params, settings = sections["monitor"], sections["monitoring"]

    from monitoring.alerts import EXIT_ALERT
    from monitoring.loop import run_forever, run_scheduled
    from monitoring.retrain import LocalTarget

    target = LocalTarget.from_project(args.project) if args.on_alert == "retrain" else None

    def once(end: datetime | str | None) -> dict:
        summary, folder = run_scheduled(
            args.log,
            args.reference,
            args.output,
            drift_params,
            settings,
            end,
            aligned=args.aligned,
            workspace=None if args.no_workspace else args.workspace,
            webhook=args.webhook,
            training={"pretrain": args.pretrain, "finetune": args.finetune},
            generations_reference=args.generations_reference,
            release=args.release,
            on_alert=args.on_alert,
            retrain_target=target,
            force=args.force,
        )
        if "retrain" in summary:
            print(
                f"monitoring: retrain: {summary['retrain']['action']}: {summary['retrain']['reason']}",
                flush=True,
            )
        print(
            f"monitoring: {folder}: {summary['rows']} predictions, {summary['generation_rows']} generations, "
            f"{summary['alerts']} alerts",
            flush=True,
        )
        return summary

    if args.once:
        return EXIT_ALERT if once(args.end)["alerts"] else 0

    stopping = []

    def request_stop(signum, frame) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    results = run_forever(once, args.interval, max_runs=args.max_runs, stop=lambda: bool(stopping))
    return EXIT_ALERT if any(r.get("alerts") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
