"""What every stage's ``__main__`` shares: logging, params loading, one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from components.common.params import ParamsError, load_params

DEFAULT_PARAMS = "params.yaml"


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m components.{stage}", description=description)
    parser.add_argument("--params", default=DEFAULT_PARAMS, help="params file (default: %(default)s)")
    return parser


def run_stage(
    stage: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    body: Callable[[argparse.Namespace, Any], Any],
) -> int:
    """Parse args, load and validate params (all sections), run ``body(args, params)``.

    A bad params file exits with status 2 and one line naming the key, before any work.
    """
    args = parser.parse_args(argv)
    setup_logging()
    try:
        params = load_params(args.params, stage)
    except ParamsError as exc:
        print(f"error: {args.params}: {exc}", file=sys.stderr)
        return 2
    body(args, params)
    return 0
