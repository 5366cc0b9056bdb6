"""Compile the Kubeflow pipeline to YAML, with parameter defaults from params.yaml.

    python -m pipelines.compile [--params params.yaml] [--output pipelines/llm_pipeline.yaml]

Upload the YAML in the Kubeflow UI (Pipelines > Upload pipeline) and start a run from it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp import compiler

from components.common.params import STAGES, ParamsError, load_all, to_dict

DEFAULT_OUTPUT = "pipelines/llm_pipeline.yaml"
# Where the raw samples live in the data lake on a cluster (override when starting a run).
DEFAULT_URIS = {
    "news_uri": "s3://llm-data-lake/raw/news_articles.csv",
    "reviews_uri": "s3://llm-data-lake/raw/rotten_tomatoes.csv.bz2",
}


def pipeline_arguments(params_path: str | Path, **uris: str) -> dict[str, Any]:
    """Pipeline parameters: one dict per stage from params.yaml (validated), plus the input URIs."""
    from pipelines.cluster import load_cluster

    every = load_all(params_path)
    sections = {stage: to_dict(every[stage]) for stage in STAGES}
    # The model-selection gate's record of the last promotion lives on the checkpoint PVC.
    # State that outlives a run sits on the checkpoint PVC: pretraining checkpoints (resume after a
    # killed pod) and the model-selection gate's record of the last promotion.
    mount = load_cluster().checkpoint_mount
    state = {"checkpoint_dir": f"{mount}/pretrain", "promoted_record": f"{mount}/promoted.json"}
    return {**DEFAULT_URIS, **state, **uris, **sections}


def compile_pipeline(params_path: str | Path, output: str | Path) -> Path:
    from pipelines.cluster import load_cluster
    from pipelines.llm_pipeline import build_pipeline

    pipeline = build_pipeline(load_all(params_path), load_cluster())
    compiler.Compiler().compile(
        pipeline, package_path=str(output), pipeline_parameters=pipeline_arguments(params_path)
    )
    return Path(output)


def compile_cli(
    argv: list[str] | None, prog: str, description: str, compile_fn: Callable[[str, str], Path], output: str
) -> int:
    """The command line shared by the pipeline compile scripts: --params, --output, one-line errors."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--output", default=output)
    args = parser.parse_args(argv)
    try:
        path = compile_fn(args.params, args.output)
    except ParamsError as exc:
        print(f"error: {args.params}: {exc}", file=sys.stderr)
        return 2
    print(f"compiled {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    doc = __doc__.splitlines()[0]
    return compile_cli(argv, "python -m pipelines.compile", doc, compile_pipeline, DEFAULT_OUTPUT)


if __name__ == "__main__":
    sys.exit(main())
