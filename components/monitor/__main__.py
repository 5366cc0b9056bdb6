"""CLI: ``python -m components.monitor --reference JSONL --batches DIR --output DIR [--params params.yaml]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import run_stage, stage_parser

STAGE = "monitor"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Each batch of texts against the reference -> Evidently drift reports.")
    parser.add_argument(
        "--reference", required=True, help="reference JSONL {id, text, ...} (predictions.jsonl)"
    )
    parser.add_argument("--batches", required=True, help="folder of batch JSONL files {id, text[, label]}")
    parser.add_argument("--output", required=True, help="output folder")

    def body(args, params) -> None:
        from components.monitor.core import run

        run(args.reference, args.batches, args.output, params)

    return run_stage(STAGE, parser, argv, body)


if __name__ == "__main__":
    sys.exit(main())
