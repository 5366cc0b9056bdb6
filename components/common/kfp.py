"""The Kubeflow door of every stage (used by components/*/component.py).

Components are lightweight Python components whose ``base_image`` is the project image, so the
same function runs on a cluster and under ``kfp.local``'s SubprocessRunner. A component body only
names its artifacts' paths (``components.common.artifacts``) and calls ``enter``, which runs the
stage through ``components.common.entry.run_stage``, the call the command line makes, then copies
the metrics into the KFP Metrics artifact and the lineage into the output artifacts' metadata.

The image is not fixed when a component module is imported: ``stage_component`` keeps the plain
function, and the pipeline builds the KFP component for its cluster's image (``op(image)``), so
importing a component reads no settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from components.common.metrics import flatten

LINEAGE_KEY = "dataset_version"


class StageComponent:
    """A component function, turned into a KFP component per image (cached)."""

    def __init__(self, func: Callable):
        self.func = func
        self.name = func.__name__
        self._ops: dict[str, Any] = {}

    def op(self, image: str) -> Any:
        """The KFP component running in ``image``, with nothing installed at task start."""
        if image not in self._ops:
            from kfp import dsl

            self._ops[image] = dsl.component(
                base_image=image, install_kfp_package=False, packages_to_install=[]
            )(self.func)
        return self._ops[image]


def stage_component(func: Callable) -> StageComponent:
    return StageComponent(func)


def artifact_location(artifact: Any, remote: bool) -> str:
    """Where a step reads or writes ``artifact``: its object-store URI when the work runs on other
    machines (``remote``: a distributed Beam runner's workers cannot see the pod's local
    ``artifact.path``), else ``artifact.path``. A ``minio://`` URI (KFP's default MinIO store) is
    returned as ``s3://`` (MinIO speaks the S3 API; the endpoint comes from ``AWS_ENDPOINT_URL``).

    Writing to the URI instead of the path is safe with the KFP v2 launcher (kubeflow/pipelines
    ``backend/src/v2/component/launcher_v2.go``, ``uploadOutputArtifacts``, checked at commit
    7b70c7b): after the step it uploads the local path with ``objectstore.UploadBlob``, which
    writes each local file over its key and deletes nothing; a local path the step never created
    is skipped with a warning ("We allow components to not produce output files"). So what the
    workers wrote under the URI stays, and the next step's launcher downloads everything under the
    URI prefix (``DownloadBlob``) to its own local input path, as for any other artifact.
    """
    if not remote:
        return artifact.path
    uri = str(artifact.uri)
    return "s3://" + uri[len("minio://") :] if uri.startswith("minio://") else uri


def log_metrics(artifact: Any, metrics: Mapping[str, Any]) -> None:
    """Copy the numeric leaves of a stage's metrics into a KFP ``Metrics`` artifact."""
    for name, value in flatten(metrics).items():
        artifact.log_metric(name, value)


def lineage(metrics: Mapping[str, Any], inputs: Iterable[Any]) -> str | None:
    """The dataset version an output carries: the stage's own (ingest computes it; deploy reads it
    from the bundle) or else the first one found on an input artifact."""
    if metrics.get(LINEAGE_KEY):
        return str(metrics[LINEAGE_KEY])
    for artifact in inputs:
        version = (getattr(artifact, "metadata", None) or {}).get(LINEAGE_KEY)
        if version:
            return str(version)
    return None


def enter(
    stage: str,
    params: Mapping[str, Any],
    metrics: Any,
    inputs: Iterable[Any] = (),
    outputs: Iterable[Any] = (),
    **arguments: Any,
) -> dict[str, Any]:
    """Run ``stage`` through the one entry with ``arguments`` (paths/URIs); publish its metrics
    into ``metrics`` and its dataset version into every output artifact's metadata."""
    from components.common.entry import run_stage

    inputs = list(inputs)
    result = run_stage(stage, params, **arguments)
    log_metrics(metrics, result)
    version = lineage(result, inputs)
    if version:
        for artifact in outputs:
            artifact.metadata[LINEAGE_KEY] = version
    return result


def publish_html(folder: str, html_path: str) -> None:
    """One HTML page for the KFP UI's HTML viewer: every ``*/report.html`` under ``folder``,
    one after another with a heading each (the UI shows a single file per artifact)."""
    from pathlib import Path

    from components.common.html import write_iframe_page

    reports = sorted(Path(folder).glob("*/report.html"))
    write_iframe_page(((path.parent.name, path) for path in reports), html_path)
