"""CLI: ``python -m components.clean --input JSONL_FILE_OR_FOLDER --output DIR [--decontaminate EVAL_JSONL] [--params FILE]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import run_stage, stage_parser

STAGE = "clean"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(
        STAGE,
        "Curate JSONL documents with Apache Beam: repair, quality rules, language, outliers, PII, "
        "exact and near-duplicate removal, decontamination.",
    )
    parser.add_argument(
        "--input", required=True, help="a JSONL file or a folder of *.jsonl[.gz] (path or URI)"
    )
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument(
        "--decontaminate",
        default=None,
        help="optional JSONL of evaluation texts (text, split, label): documents sharing a long "
        "n-gram with them are dropped; labelled duplicates with conflicting labels are reported",
    )

    def body(args, params) -> None:
        from components.clean.core import run

        run(args.input, args.output, params, decontaminate=args.decontaminate)

    return run_stage(STAGE, parser, argv, body)


if __name__ == "__main__":
    sys.exit(main())
