"""The command-line door of every stage (``python -m components.<stage>``, what dvc.yaml runs).

Each ``__main__.py`` declares its flags (their ``dest`` names are the core's argument names) and
calls ``main``; the work goes through ``components.common.entry.run_stage``, the same call the
Kubeflow components make.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from components.common.entry import InputError, StageRefused, run_stage
from components.common.params import ParamsError

DEFAULT_PARAMS = "params.yaml"


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m components.{stage}", description=description)
    parser.add_argument("--params", default=DEFAULT_PARAMS, help="params file (default: %(default)s)")
    return parser


def main(stage: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the stage. Exit status: 0 done; 2 bad params or arguments (one line
    naming the key, before any work); 1 the stage refused its inputs (the gate's message)."""
    arguments = vars(parser.parse_args(argv))
    params = arguments.pop("params")
    try:
        run_stage(stage, params, **arguments)
    except ParamsError as exc:
        print(f"error: {params}: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StageRefused as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0
