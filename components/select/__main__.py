"""CLI: ``python -m components.select --evaluation outputs/evaluate --finetuned outputs/finetune
--candidates outputs/compress --output outputs/select [--promoted models/promoted.json]``.

Exit 1 with the gate's message when the chosen model is worse than the one promoted before."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import run_stage, stage_parser

STAGE = "select"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Choose the model to ship under constraints; refuse a regression.")
    parser.add_argument("--evaluation", required=True, help="evaluate output folder (models.json)")
    parser.add_argument("--finetuned", required=True, help="finetune output folder (the 'finetuned' row)")
    parser.add_argument(
        "--candidates", default=None, help="compress output folder (one folder per variant row)"
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    parser.add_argument(
        "--promoted",
        default="models/promoted.json",
        help="promotion record (JSON), read for the gate and rewritten on promotion; '' = no gate",
    )
    refused: list[str] = []

    def body(args, params) -> None:
        from components.select.core import GateRefused, NoCandidate, run

        try:
            run(args.evaluation, args.finetuned, args.candidates, args.output, params, args.promoted or None)
        except (GateRefused, NoCandidate) as exc:
            refused.append(str(exc))

    code = run_stage(STAGE, parser, argv, body)
    if refused:
        print(f"Error: {refused[0]}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
