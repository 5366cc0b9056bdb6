"""CLI: ``python -m components.compress --finetuned outputs/finetune --tokenized outputs/tokenize --task outputs/ingest/task.jsonl --output outputs/compress``

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "compress"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "int8, pruned and distilled variants of the fine-tuned classifier.")
    parser.add_argument("--finetuned", required=True, help="finetune output folder (the float classifier)")
    parser.add_argument(
        "--tokenized",
        required=True,
        help="tokenize output folder (tokenizer.json, if the model folder lacks one)",
    )
    parser.add_argument("--task", required=True, help="ingest's task.jsonl {id, text, label, split}")
    parser.add_argument(
        "--output", required=True, help="output folder (replaced atomically), one model folder per variant"
    )
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
