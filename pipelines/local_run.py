"""Run the whole Kubeflow pipeline on this machine with kfp.local's SubprocessRunner.

    python -m pipelines.local_run [--params params.yaml] [--root outputs/kfp-local]

Tasks run as subprocesses of this Python (no containers), so the project must be installed in the
current environment (`make setup` does it). Outputs land under ROOT/<run>/<task>/<artifact>.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kfp import local

from pipelines.compile import pipeline_arguments

RAW_NEWS = "data/raw/news_articles.csv"
RAW_REVIEWS = "data/raw/rotten_tomatoes.csv.bz2"


def run_local(
    params_path: str | Path, root: str | Path, news: str = RAW_NEWS, reviews: str = RAW_REVIEWS
) -> Path:
    """Run the pipeline; return the run folder (ROOT/<pipeline>-<timestamp>)."""
    from components.common.params import load_all
    from pipelines.cluster import load_cluster
    from pipelines.llm_pipeline import build_pipeline

    root = Path(root).resolve()
    # State that outlives a run (on a cluster: the PVC) goes in ROOT/_state, and kfp.local's
    # workspace in ROOT/_workspace (not the system temp folder, where kfp would leave a
    # kfp-workspace-* folder behind on every run); both made before the listing below, so the
    # run's own folder is the only new one.
    state, workspace = root / "_state", root / "_workspace"
    for folder in (state, workspace):
        folder.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        workspace_root=str(workspace),
        raise_on_error=True,
    )
    args = pipeline_arguments(
        params_path,
        news_uri=str(Path(news).resolve()),
        reviews_uri=str(Path(reviews).resolve()),
        promoted_record=str(state / "promoted.json"),
        checkpoint_dir=str(state / "checkpoints"),
    )
    build_pipeline(load_all(params_path), load_cluster())(**args)
    (run_dir,) = set(root.iterdir()) - before
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.local_run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default="outputs/kfp-local")
    args = parser.parse_args(argv)
    print(f"run folder: {run_local(args.params, args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
