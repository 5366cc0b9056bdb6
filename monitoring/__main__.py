"""CLI: the continuous monitor over the server's prediction log.

    python -m monitoring --once [--end 2026-05-01T12:00:00Z] [options]
    python -m monitoring --interval 3600 [--max-runs N] [options]

Options (defaults fit the local layout): ``--log outputs/prediction_log``, ``--reference
outputs/evaluate/predictions.jsonl``, ``--output outputs/monitoring`` (one folder per run, named by
the window's end, plus ``alerts.json`` of the latest run), ``--workspace
outputs/monitoring_workspace`` (``--no-workspace`` to skip), ``--pretrain outputs/pretrain`` and
``--finetune outputs/finetune`` (training cost), ``--webhook URL`` (or ``$MONITOR_WEBHOOK_URL``),
``--aligned`` (end windows on a multiple of ``monitor.window_minutes`` since midnight UTC),
``--params params.yaml`` (the ``monitor`` section; the whole file is validated).

Exit status: 0 no alert, 1 an alert fired (in ``--interval`` mode: in any run), 2 bad params
file. SIGTERM / SIGINT stop an ``--interval`` loop after the run in progress.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from components.common.cli import DEFAULT_PARAMS, setup_logging
from components.common.params import ParamsError, load_params

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
    p.add_argument("--output", default="outputs/monitoring", help="reports folder (default: %(default)s)")
    p.add_argument(
        "--workspace",
        default="outputs/monitoring_workspace",
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
        "--webhook",
        default=os.environ.get(WEBHOOK_ENV),
        help=f"POST alert JSON here (default: ${WEBHOOK_ENV})",
    )
    p.add_argument("--params", default=DEFAULT_PARAMS, help="params file (default: %(default)s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.end is not None and not args.once:
        parser().error("--end goes with --once")
    setup_logging()
    try:
        params = load_params(args.params, "monitor")
    except ParamsError as exc:
        print(f"error: {args.params}: {exc}", file=sys.stderr)
        return 2

    from monitoring.alerts import EXIT_ALERT
    from monitoring.loop import run_forever, run_once, window_end_floor
    from monitoring.window import parse_time

    def once(end: datetime) -> dict:
        if args.aligned:
            end = window_end_floor(end, params.window_minutes)
        summary, folder = run_once(
            args.log,
            args.reference,
            args.output,
            params,
            end,
            workspace=None if args.no_workspace else args.workspace,
            training={"pretrain": args.pretrain, "finetune": args.finetune},
            webhook=args.webhook,
        )
        print(f"monitoring: {folder}: {summary['rows']} predictions, {summary['alerts']} alerts", flush=True)
        return summary

    if args.once:
        end = parse_time(args.end) if args.end else datetime.now(UTC)
        return EXIT_ALERT if once(end)["alerts"] else 0

    stopping = []

    def request_stop(signum, frame) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    results = run_forever(once, args.interval, max_runs=args.max_runs, stop=lambda: bool(stopping))
    return EXIT_ALERT if any(r.get("alerts") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
