"""CLI: ``python -m components.evaluate --pretrained outputs/pretrain --tokenizer outputs/tokenize
--finetuned outputs/finetune --task outputs/ingest/task.jsonl [--candidates outputs/compress]
--output outputs/evaluate``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import run_stage, stage_parser

STAGE = "evaluate"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Perplexity of the pretrained GPT; accuracy and macro-F1 of the classifier.")
    parser.add_argument(
        "--pretrained", required=True, help="pretrain output folder (model.json, checkpoint/)"
    )
    parser.add_argument("--tokenizer", required=True, help="tokenize output folder (test_text_document.*)")
    parser.add_argument("--finetuned", required=True, help="finetune output folder (the classifier)")
    parser.add_argument("--task", required=True, help="task.jsonl {id, text, label, split}")
    parser.add_argument(
        "--candidates", default=None, help="compress output folder: every model folder in it is scored too"
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")

    def body(args, params) -> None:
        from components.evaluate.core import run

        run(args.pretrained, args.tokenizer, args.finetuned, args.task, args.output, params, args.candidates)

    return run_stage(STAGE, parser, argv, body)


if __name__ == "__main__":
    sys.exit(main())
