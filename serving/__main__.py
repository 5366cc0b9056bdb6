"""CLI: ``python -m serving --model DIR [--generator DIR] [--log URI] [--host H] [--port P] [--params params.yaml]``.

Validates the ``serving`` settings (the whole file, as every stage does: a bad key exits 2 with
one line) and the model folder (not one: exit 2, one line), loads the model, and serves until
SIGINT/SIGTERM. Prints ``serving: listening on http://HOST:PORT (model VERSION)`` once the model is
loaded and the socket listens (``--port 0`` picks a free port; the line tells which). On SIGTERM
uvicorn stops accepting, finishes the in-flight requests (up to ``serving.shutdown_timeout_s``),
and the prediction log writes every buffered row before the process exits. With
``serving.workers`` N > 1 the process is a parent that holds the port and starts N worker
processes on it, one model each (serving.workers: what they share, how SIGTERM drains them all,
what happens when one dies); the line is printed once all N are ready, and names them:
``(model VERSION, N workers)``. ``--generator DIR`` (a generator folder, llm.generator: ``make
serve`` passes the release's ``outputs/deploy/generator`` when it exists) also serves POST
/generate, on the same port and log; without it /generate answers 503.

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
        "--model",
        required=True,
        help="model folder of either kind: a GPT classifier or the TF-IDF baseline (llm.served.load_model)",
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

    from llm.served import model_version
    from serving.workers import ServeSpec, Supervisor, bind, serve_in_process

    try:
        model_version(args.model)  # a wrong folder exits 2 with one line, before any worker starts
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: --model: {exc}", file=sys.stderr)
        return 2
    if args.generator is not None:
        from llm.generator import generator_version

        try:
            generator_version(args.generator)  # a wrong folder exits 2 with one line, before any loading
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: --generator: {exc}", file=sys.stderr)
            return 2
    spec = ServeSpec(model=args.model, generator=args.generator, log=args.log, params=params)
    sock, host, port = bind(args.host, args.port, reuse_port=params.workers > 1)
    try:
        if params.workers == 1:
            return serve_in_process(spec, sock, f"{host}:{port}")
        return Supervisor(spec, sock, f"{host}:{port}").run()
    finally:
        sock.close()
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())
