"""CLI: ``python -m components.finetune --pretrained outputs/pretrain --tokenizer outputs/tokenize
--task outputs/ingest/task.jsonl --output outputs/finetune``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import run_stage, stage_parser

STAGE = "finetune"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Fine-tune the pretrained GPT as a sentiment classifier.")
    parser.add_argument(
        "--pretrained", required=True, help="pretrain output folder (model.json, checkpoint/)"
    )
    parser.add_argument("--tokenizer", required=True, help="tokenize output folder (tokenizer.json)")
    parser.add_argument("--task", required=True, help="task.jsonl {id, text, label, split}")
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")

    def body(args, params) -> None:
        from components.finetune.core import run

        run(args.pretrained, args.tokenizer, args.task, args.output, params)

    return run_stage(STAGE, parser, argv, body)


if __name__ == "__main__":
    sys.exit(main())
