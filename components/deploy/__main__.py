"""CLI: ``python -m components.deploy --model outputs/select/model --reference outputs/select/predictions.jsonl --dataset outputs/ingest --output outputs/deploy``

It writes the release bundle; ``python -m serving --model outputs/deploy/model`` (``make serve``)
serves it.

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "deploy"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Bundle the chosen model for the model server, after a smoke test.")
    parser.add_argument("--model", required=True, help="the model folder to release (select's model/)")
    parser.add_argument(
        "--reference",
        default=None,
        help="predictions.jsonl of that model on the test split, for the smoke test",
    )
    parser.add_argument(
        "--dataset", default=None, help="ingest's output folder (its dataset.json is recorded)"
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
