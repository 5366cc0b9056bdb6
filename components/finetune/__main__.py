"""CLI: ``python -m components.finetune --pretrained outputs/pretrain --tokenized outputs/tokenize --task outputs/ingest/task.jsonl --output outputs/finetune``

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "finetune"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Fine-tune the pretrained GPT as a sentiment classifier.")
    parser.add_argument(
        "--pretrained", required=True, help="pretrain output folder (model.json, checkpoint/)"
    )
    parser.add_argument(
        "--tokenized", required=True, help="tokenize output folder (tokenizer.json, indexed datasets)"
    )
    parser.add_argument("--task", required=True, help="ingest's task.jsonl {id, text, label, split}")
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
