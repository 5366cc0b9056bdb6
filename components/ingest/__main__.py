"""CLI: ``python -m components.ingest --news CSV --reviews CSV [--input URI ...] --output DIR``

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "ingest"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(
        STAGE, "Raw sources -> corpus.jsonl, task.jsonl, qa.jsonl (cloze QA) and monitoring batches."
    )
    parser.add_argument("--news", default=None, help="news sample CSV (pretraining documents)")
    parser.add_argument("--reviews", default=None, help="Rotten Tomatoes sample CSV (task set and batches)")
    parser.add_argument(
        "--input",
        dest="inputs",
        action="extend",
        nargs="+",
        default=[],
        metavar="URI",
        help="more documents: a file or folder (local, s3://, gs://) of JSONL/CSV/Parquet/TXT[.gz]",
    )
    parser.add_argument(
        "--feedback",
        default=None,
        metavar="URI",
        help="the data flywheel's folder of harvest files (feedback-*.jsonl): labelled served predictions",
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
