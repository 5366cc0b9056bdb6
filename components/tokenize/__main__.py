"""CLI: ``python -m components.tokenize --input outputs/clean/documents [--task outputs/ingest/task.jsonl] --output outputs/tokenize``

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "tokenize"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Train a byte-level BPE tokenizer and write megatron indexed datasets.")
    parser.add_argument(
        "--input",
        required=True,
        help="folder (or URI) of clean JSONL documents {id, text}: clean's documents/",
    )
    parser.add_argument(
        "--task",
        default=None,
        help="task.jsonl {id, text, label, split}: its train and valid texts become the task source, {train,valid}_task_document (tokenize.task_texts_per_document)",
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
