"""CLI: ``python -m components.tokenize --input outputs/clean/documents --output outputs/tokenize
[--task outputs/ingest/task.jsonl]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import run_stage, stage_parser

STAGE = "tokenize"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Train a byte-level BPE tokenizer and write megatron indexed datasets.")
    parser.add_argument("--input", required=True, help="folder (or URI) of clean JSONL documents {id, text}")
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    parser.add_argument(
        "--task",
        default=None,
        help="task.jsonl {id, text, label, split}: its train and valid texts become the task "
        "source, {train,valid}_task_document (tokenize.task_texts_per_document)",
    )

    def body(args, params) -> None:
        from components.tokenize.core import run

        run(args.input, args.output, params, task=args.task)

    return run_stage(STAGE, parser, argv, body)


if __name__ == "__main__":
    sys.exit(main())
