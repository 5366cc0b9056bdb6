"""CLI: ``python -m components.monitor --reference outputs/evaluate/predictions.jsonl --batches outputs/ingest/batches --output outputs/monitor``

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "monitor"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Each batch of texts against the reference -> Evidently drift reports.")
    parser.add_argument(
        "--reference", required=True, help="reference JSONL {id, text, ...} (evaluate's predictions.jsonl)"
    )
    parser.add_argument(
        "--batches", required=True, help="folder of batch JSONL files {id, text[, label]} (ingest's batches/)"
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
