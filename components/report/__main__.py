"""CLI: ``python -m components.report --ingest outputs/ingest --clean outputs/clean ... --monitor outputs/monitor --output outputs/report``

One flag per stage whose output the page reads (each optional: a stage not given is shown as not
part of the run). The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser
from components.report.core import DAG

STAGE = "report"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "One HTML page of the run: DAG, curves, confusion matrix, models, drift.")
    for stage in DAG:
        parser.add_argument(f"--{stage}", default=None, help=f"the {stage} stage's output folder")
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
