"""The thin layer between Kubeflow and the stage cores (used by components/*/component.py).

Components are lightweight Python components whose ``base_image`` is the project image, so the
same function runs on a cluster and under ``kfp.local``'s SubprocessRunner. Their bodies only
translate arguments: validate the stage's dict parameter with the same loader as params.yaml,
call ``core.run``, and copy the metrics into the KFP Metrics artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kfp import dsl

from components.common.metrics import flatten
from components.common.params import from_dict, params_class


def _base_image() -> str:
    # One setting names the image of every component: pipelines/cluster.yaml (or LLM_LINE_IMAGE).
    # Read when the component modules are imported, because @dsl.component fixes the image then.
    from pipelines.cluster import load_cluster

    return load_cluster().image


BASE_IMAGE = _base_image()


def stage_component(func):
    """``@dsl.component`` with the project image and nothing installed at task start."""
    return dsl.component(base_image=BASE_IMAGE, install_kfp_package=False, packages_to_install=[])(func)


def stage_params(stage: str, params: Mapping[str, Any]) -> Any:
    """The stage's typed params from a KFP dict parameter (protobuf Struct: numbers are doubles)."""
    return from_dict(params_class(stage), dict(params), stage, struct_numbers=True)


def log_metrics(artifact: Any, metrics: Mapping[str, Any]) -> None:
    """Copy the numeric leaves of a stage's metrics into a KFP ``Metrics`` artifact."""
    for name, value in flatten(metrics).items():
        artifact.log_metric(name, value)


def publish_html(folder: str, html_path: str) -> None:
    """One HTML page for the KFP UI's HTML viewer: every ``*/report.html`` under ``folder``,
    one after another with a heading each (the UI shows a single file per artifact)."""
    from pathlib import Path

    reports = sorted(Path(folder).glob("*/report.html"))
    parts = ["<!doctype html><html><body>"]
    for path in reports:
        parts.append(f"<h1>{path.parent.name}</h1>")
        # Each Evidently report is a full document; an iframe keeps their scripts apart.
        src = path.read_text(encoding="utf-8").replace("&", "&amp;").replace('"', "&quot;")
        parts.append(f'<iframe srcdoc="{src}" style="width:100%;height:900px;border:0"></iframe>')
    parts.append("</body></html>")
    Path(html_path).parent.mkdir(parents=True, exist_ok=True)
    Path(html_path).write_text("\n".join(parts), encoding="utf-8")
