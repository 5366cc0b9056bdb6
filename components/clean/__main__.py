"""CLI: ``python -m components.clean --input JSONL_FILE_OR_FOLDER [--decontaminate EVAL_JSONL ...] --output DIR``

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
        dest="decontaminate",
        action="extend",
        nargs="+",
        default=[],
        metavar="EVAL_JSONL",
        help="optional JSONL files of evaluation records (text or passage, split, label), e.g. ingest's task.jsonl and qa.jsonl: documents sharing a long n-gram with their valid/test texts are dropped; labelled duplicates with conflicting labels are reported",
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
