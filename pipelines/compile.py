"""Compile the Kubeflow pipeline to YAML, with parameter defaults from params.yaml.

    python -m pipelines.compile [--params params.yaml] [--output pipelines/llm_pipeline.yaml]

Upload the YAML in the Kubeflow UI (Pipelines > Upload pipeline) and start a run from it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler

from components.common.params import STAGES, ParamsError, load_all, to_dict

DEFAULT_OUTPUT = "pipelines/llm_pipeline.yaml"
# Where the raw samples live in the data lake on a cluster (override when starting a run).
DEFAULT_URIS = {
    "news_uri": "s3://llm-data-lake/raw/news_articles.csv",
    "reviews_uri": "s3://llm-data-lake/raw/rotten_tomatoes.csv.bz2",
}


def pipeline_arguments(params_path: str | Path, **uris: str) -> dict[str, Any]:
    """Pipeline parameters: one dict per stage from params.yaml (validated), the input URIs, and
    ``costs`` (``costs_argument``)."""
    from pipelines.cluster import load_cluster

    every = load_all(params_path)
    sections = {stage: to_dict(every[stage]) for stage in STAGES}
    # The model-selection gate's record of the last promotion lives on the checkpoint PVC.
    # State that outlives a run sits on the checkpoint PVC: pretraining checkpoints (resume after a
    # killed pod) and the model-selection gate's record of the last promotion.
    mount = load_cluster().checkpoint_mount
    state = {"checkpoint_dir": f"{mount}/pretrain", "promoted_record": f"{mount}/promoted.json"}
    return {**DEFAULT_URIS, **state, **uris, **sections, "costs": costs_argument(every["monitoring"])}


def costs_argument(settings: Any) -> dict[str, Any]:
    """The pipeline's ``costs`` parameter: the ``monitoring`` section's prices and training window
    (``settings``: its typed Settings), what select prices training hours with on Kubeflow."""
    return {"prices": to_dict(settings.prices), "training_window": to_dict(settings.training_window)}


_HEADER_DEFAULT = re.compile(r"^(#\s+)(\w+): (\w+) \[Default: .*\]$")


def stabilize(path: str | Path, arguments: dict[str, Any]) -> Path:
    """Rewrite a compiled pipeline so the same inputs give the same bytes, with params' types kept.

    kfp writes each dict parameter's default in the header comment in a varying key order, and
    stores defaults as protobuf Structs, whose numbers are all doubles (``train_steps: 200.0``).
    Here every default of ``arguments`` is written back as the JSON value it is (ints stay ints;
    Kubeflow reads either), and the header lists it with sorted keys. The spec is otherwise kfp's.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    n_header = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    plain = {name: json.loads(json.dumps(value)) for name, value in arguments.items()}
    header = []
    for line in lines[:n_header]:
        match = _HEADER_DEFAULT.match(line.rstrip("\n"))
        if match and match.group(2) in plain:
            indent, name, kind = match.groups()
            line = f"{indent}{name}: {kind} [Default: {json.dumps(plain[name], sort_keys=True)}]\n"
        header.append(line)
    documents = list(yaml.safe_load_all("".join(lines[n_header:])))
    for spec in documents[0]["root"]["inputDefinitions"]["parameters"].items():
        name, definition = spec
        if name in plain and "defaultValue" in definition:
            definition["defaultValue"] = plain[name]
    path.write_text("".join(header) + yaml.safe_dump_all(documents, sort_keys=True), encoding="utf-8")
    return path


def compile_pipeline(params_path: str | Path, output: str | Path) -> Path:
    from pipelines.cluster import load_cluster
    from pipelines.llm_pipeline import build_pipeline

    pipeline = build_pipeline(load_all(params_path), load_cluster())
    arguments = pipeline_arguments(params_path)
    compiler.Compiler().compile(pipeline, package_path=str(output), pipeline_parameters=arguments)
    return stabilize(output, arguments)


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
