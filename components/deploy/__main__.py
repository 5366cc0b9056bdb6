"""CLI of the deploy stage (what dvc.yaml runs):

    python -m components.deploy --model outputs/finetune --reference outputs/evaluate/predictions.jsonl
        --dataset outputs/ingest --output outputs/deploy [--params params.yaml]

It writes the release bundle; ``python -m serving --model outputs/deploy/model`` (``make serve``)
serves it.
"""

from __future__ import annotations

import sys

from components.common.cli import run_stage, stage_parser
from components.deploy.core import run


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("deploy", "Bundle the chosen model for the model server, after a smoke test.")
    parser.add_argument("--model", required=True, help="classifier folder (finetune's output)")
    parser.add_argument("--reference", help="evaluate's predictions.jsonl, for the smoke test")
    parser.add_argument("--dataset", help="ingest's output folder (its dataset.json is recorded)")
    parser.add_argument("--output", required=True, help="release bundle folder")
    return run_stage(
        "deploy",
        parser,
        argv,
        lambda a, p: run(a.model, a.output, p, reference=a.reference, dataset=a.dataset),
    )


if __name__ == "__main__":
    sys.exit(main())
