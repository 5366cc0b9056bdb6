"""CLI: ``python -m components.clean --input JSONL_FILE_OR_FOLDER [--decontaminate TASK_JSONL] --output DIR``

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "clean"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(
        STAGE,
        "Curate JSONL documents with Apache Beam: repair, quality rules, language, outliers, PII, exact and near-duplicate removal, decontamination.",
    )
    parser.add_argument(
        "--input",
        required=True,
        help="a JSONL file or a folder of *.jsonl[.gz] (path or URI): ingest's corpus.jsonl",
    )
    parser.add_argument(
        "--decontaminate",
        default=None,
        help="optional JSONL of evaluation texts (text, split, label): documents sharing a long n-gram with them are dropped; labelled duplicates with conflicting labels are reported",
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
