"""CLI: ``python -m components.evaluate --pretrained outputs/pretrain --tokenized outputs/tokenize --finetuned outputs/finetune --task outputs/ingest/task.jsonl [--variants outputs/compress] [--sft outputs/sft --qa outputs/ingest/qa.jsonl] --output outputs/evaluate``

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "evaluate"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(
        STAGE,
        "Perplexity of the pretrained GPT; quality, latency and size of the classifier, its variants and the TF-IDF baseline.",
    )
    parser.add_argument(
        "--pretrained", required=True, help="pretrain output folder (model.json, checkpoint/)"
    )
    parser.add_argument("--tokenized", required=True, help="tokenize output folder (test_text_document.*)")
    parser.add_argument("--finetuned", required=True, help="finetune output folder (the classifier)")
    parser.add_argument("--task", required=True, help="ingest's task.jsonl {id, text, label, split}")
    parser.add_argument(
        "--variants", default=None, help="compress output folder: every model folder in it is scored too"
    )
    parser.add_argument(
        "--sft",
        default=None,
        help="sft output folder (a generator folder): with --qa, the generative (QA) table too",
    )
    parser.add_argument(
        "--qa", default=None, help="ingest's qa.jsonl {id, split, prompt, answer, candidates, ...}"
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
