"""CLI: ``python -m components.compress --model outputs/finetune --tokenizer outputs/tokenize
--task outputs/ingest/task.jsonl --output outputs/compress``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import run_stage, stage_parser

STAGE = "compress"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "int8, pruned and distilled variants of the fine-tuned classifier.")
    parser.add_argument("--model", required=True, help="finetune output folder (the float classifier)")
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="tokenize output folder (tokenizer.json, if the model folder lacks one)",
    )
    parser.add_argument("--task", required=True, help="task.jsonl {id, text, label, split}")
    parser.add_argument(
        "--output", required=True, help="output folder (replaced atomically), one folder per variant"
    )

    def body(args, params) -> None:
        from components.compress.core import run

        run(args.model, args.tokenizer, args.task, args.output, params)

    return run_stage(STAGE, parser, argv, body)


if __name__ == "__main__":
    sys.exit(main())
