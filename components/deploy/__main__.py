"""CLI: ``python -m components.deploy --model outputs/select/model --reference outputs/select/predictions.jsonl --dataset outputs/ingest --output outputs/deploy --image IMAGE --storage-uri s3://... --prediction-log s3://...``

It writes the release bundle and its KServe InferenceService (``--image``, ``--storage-uri``,
``--prediction-log``, ``--data-lake-secret``: dvc.yaml passes its ``kserve`` vars);
``python -m serving --model outputs/deploy/model`` (``make serve``) serves it here.

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
    parser.add_argument(
        "--generator",
        default=None,
        help="select's generator/ folder, bundled as generator/ (absent = select shipped none)",
    )
    parser.add_argument(
        "--generations", default=None, help="select's generations.jsonl, the generator's smoke reference"
    )
    parser.add_argument(
        "--decision",
        default=None,
        help="select's decision.json (the generator's QA figures for release.json)",
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    parser.add_argument(
        "--image", required=True, help="project image the KServe InferenceService runs (name:tag)"
    )
    parser.add_argument(
        "--storage-uri",
        required=True,
        help="where the release bundle (--output) is published in the data lake, for KServe (s3://...)",
    )
    parser.add_argument(
        "--prediction-log", required=True, help="prediction-log URI of the served model (s3://...)"
    )
    parser.add_argument(
        "--data-lake-secret",
        default=None,
        help="Kubernetes secret with the lake's AWS_* keys, passed to the server pods (name)",
    )
    return stage_main(STAGE, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
