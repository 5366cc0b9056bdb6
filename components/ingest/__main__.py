"""CLI: ``python -m components.ingest --news CSV --reviews CSV [--input URI ...] --output DIR``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import run_stage, stage_parser

STAGE = "ingest"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Raw sources -> corpus.jsonl, task.jsonl and monitoring batches.")
    parser.add_argument("--news", help="news sample CSV (pretraining documents)")
    parser.add_argument("--reviews", help="Rotten Tomatoes sample CSV (task set and batches)")
    parser.add_argument(
        "--input",
        action="extend",
        nargs="+",
        default=[],
        metavar="URI",
        help="more documents: a file or folder (local, s3://, gs://) of JSONL/CSV/Parquet/TXT[.gz]",
    )
    parser.add_argument("--output", required=True, help="output folder")

    def body(args, params) -> None:
        from components.ingest.core import run

        run(args.news, args.reviews, args.output, params, inputs=args.input)

    args_probe = parser.parse_args(argv)
    if not (args_probe.news or args_probe.reviews or args_probe.input):
        parser.error("give at least one of --news, --reviews, --input")
    return run_stage(STAGE, parser, argv, body)


if __name__ == "__main__":
    sys.exit(main())
