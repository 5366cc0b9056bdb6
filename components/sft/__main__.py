"""CLI: ``python -m components.sft --pretrained outputs/pretrain --tokenized outputs/tokenize --pairs outputs/ingest/qa.jsonl --output outputs/sft``

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "sft"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(
        STAGE, "Fine-tune the pretrained GPT on prompt -> response pairs (loss on responses)."
    )
    parser.add_argument(
        "--pretrained", required=True, help="pretrain output folder (model.json, checkpoint/)"
    )
    parser.add_argument(
        "--pairs", required=True, help="JSONL of {prompt, response[, split, id]} (ingest's qa.jsonl)"
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    parser.add_argument(
        "--tokenized",
        default="",
        help="tokenize output folder or tokenizer.json (default: the pretrained folder's tokenizer.json)",
    )
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
