"""CLI: ``python -m components.select --evaluation outputs/evaluate --finetuned outputs/finetune --variants outputs/compress --output outputs/select [--promoted models/promoted.json] [--pretrained outputs/pretrain]``

The return-on-investment figures price the recorded training hours with the params file's
``monitoring.prices`` and ``monitoring.training_window`` (``components.common.entry.stage_costs``).

Exit 1 with the gate's message when the chosen model is worse than the one promoted before.

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "select"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Choose the model to ship under constraints; refuse a regression.")
    parser.add_argument(
        "--evaluation", required=True, help="evaluate output folder (models.json, predictions/)"
    )
    parser.add_argument("--finetuned", required=True, help="finetune output folder (the 'finetuned' row)")
    parser.add_argument(
        "--variants", default=None, help="compress output folder (one folder per variant row)"
    )
    parser.add_argument(
        "--sft", default=None, help="sft output folder (the generator; chosen from evaluation/qa.json)"
    )
    parser.add_argument(
        "--pretrained",
        default=None,
        help="pretrain output folder (metrics.json, run.json: training hours and start, for the ROI figures)",
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    parser.add_argument(
        "--promoted",
        default="models/promoted.json",
        help="promotion record (JSON), read for the gate and rewritten on promotion; '' = no gate",
    )
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
