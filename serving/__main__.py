"""CLI: ``python -m serving --model DIR [--generator DIR] [--log URI] [--host H] [--port P] [--params params.yaml]``.

Loads the model folder, validates the ``serving`` settings (the whole file, as every stage does:
a bad key exits 2 with one line), and serves until SIGINT/SIGTERM. Prints
``serving: listening on http://HOST:PORT (model VERSION)`` once the socket is bound (``--port 0``
picks a free port; the line tells which). On SIGTERM uvicorn stops accepting, finishes the
in-flight requests (up to ``serving.shutdown_timeout_s``), and the prediction log writes every
buffered row before the process exits. ``--generator DIR`` (a generator folder, llm.generator:
``make serve`` passes the release's ``outputs/deploy/generator`` when it exists) also serves
POST /generate, on the same port and log; without it /generate answers 503.

On Kubernetes it runs as the release's KServe InferenceService (components/deploy/kserve.py writes
it): ``--model /mnt/models/model`` (where KServe's storage initializer puts the release bundle),
``--generator /mnt/models/generator``, ``--host 0.0.0.0 --port 8080`` (KServe's predictor port), ``--log $(PREDICTION_LOG_URI)``
(expanded by Kubernetes). Without ``--port`` the server listens on ``$PORT`` when it is set (the
port Knative routes requests to, set to the containerPort), else on 8000.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence

from components.common.cli import DEFAULT_PARAMS
from components.common.entry import setup_logging
from components.common.params import ParamsError, load_params

DEFAULT_LOG = "outputs/prediction_log"
DEFAULT_PORT = 8000


def parser(prog: str = "python -m serving") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve a classifier folder (and a generator folder) over HTTP; log every prediction.",
    )
    p.add_argument(
        "--model", required=True, help="model folder (classifier.json, model.safetensors, tokenizer.json)"
    )
    p.add_argument(
        "--generator",
        default=None,
        help="generator folder (model.json, checkpoint/, tokenizer.json, generator.json) to serve on "
        "POST /generate (default: none; /generate answers 503)",
    )
    p.add_argument(
        "--log", default=DEFAULT_LOG, help="prediction-log URI: folder or s3://... (default: %(default)s)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"TCP port, 0 = any free port (default: $PORT when set, as Knative sets it, else {DEFAULT_PORT})",
    )
    p.add_argument("--params", default=DEFAULT_PARAMS, help="params file (default: %(default)s)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m serving") -> int:
    p = parser(prog)
    args = p.parse_args(argv)
    if args.port is None:
        try:
            args.port = int(os.environ.get("PORT") or DEFAULT_PORT)
        except ValueError:
            p.error(f"$PORT must be a TCP port number, got {os.environ['PORT']!r}")
    setup_logging()
    try:
        params = load_params(args.params, "serving")
    except ParamsError as exc:
        print(f"error: {args.params}: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from llm.served import load_model
    from serving.app import create_app
    from serving.prediction_log import PredictionLog

    generator = None
    if args.generator is not None:
        from llm.generator import generator_version, load_generator

        try:
            generator_version(args.generator)  # a wrong folder exits 2 with one line, before any loading
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: --generator: {exc}", file=sys.stderr)
            return 2
    model = load_model(args.model, batch_size=params.eval_batch_size, cpu_threads=params.cpu_threads)
    prediction_log = PredictionLog(
        args.log,
        params.log_flush_rows,
        params.log_flush_seconds,
        feedback_window_requests=params.feedback_window_requests,
    )
    if args.generator is not None:
        generator = load_generator(args.generator, cpu_threads=params.cpu_threads)
    app = create_app(model, params, prediction_log, generator=generator)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        log_level="info",
        access_log=False,  # the prediction log and /metrics record every request already
        timeout_graceful_shutdown=params.shutdown_timeout_s,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    served = f"model {model.version}"
    if generator is not None:
        served += f", generator {generator.version}"
    print(f"serving: listening on http://{shown}:{port} ({served})", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        prediction_log.close()  # a no-op after a clean shutdown; a last chance after a failed one
        logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
