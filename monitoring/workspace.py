"""The Evidently workspace: one project per served model version, one snapshot per report per run.

A local folder (``evidently ui --workspace DIR`` shows it; ``make monitor-ui``). Each monitor run
adds its reports as snapshots, tagged by report (``drift``, ``ops``, ``quality``) and stamped with
the window's end, so the project's dashboard plots them over time. The dashboard is created with
the project:

- Predictions per window (counter) and Share of drifted text columns (counter, last run);
- Text drift: share of drifted text columns, per run;
- Prediction drift: the predicted-label distance to the reference, per run;
- Latency: p50 / p95 / p99 server latency, per run;
- Cost: USD per 1,000 predictions and USD per window;
- Quality: accuracy on labelled predictions (when labels arrived).

A served generator (POST /generate) gets its own project, ``generator model <version>``, with the
generation panels (``generation_panels``; snapshots tagged ``generation_prompts``,
``generation_outputs``, ``generation_ops`` by monitoring.generations): generations per window,
prompt and output drift, empty-output share, repetition, ms per generated token, generated tokens,
cost per 1M generated tokens.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from llm.drift import _evidently
from monitoring.reports import LATENCY, LATENCY_QUANTILES, PREDICTION

PROJECT_PREFIX = "sentiment model "  # + model version
GENERATOR_PROJECT_PREFIX = "generator model "  # + generator version
CLASSIFIER, GENERATOR = "classifier", "generator"  # project kinds
TAG_DRIFT, TAG_OPS, TAG_QUALITY = "drift", "ops", "quality"


def project_name(version: str, kind: str = CLASSIFIER) -> str:
    return f"{GENERATOR_PROJECT_PREFIX if kind == GENERATOR else PROJECT_PREFIX}{version}"


def _metric(name: str) -> str:
    return f"evidently:metric_v2:{name}"


def dashboard_panels() -> list[Any]:
    """The panels of a model's dashboard (evidently.sdk.panels), declared once."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    def series(metric: str, legend: str, tag: str, **labels: str) -> Any:
        return PanelMetric(legend=legend, metric=_metric(metric), metric_labels=labels, tags=[tag])

    return [
        counter_panel(
            title="Predictions per window",
            values=[series("RowCount", "predictions", TAG_OPS)],
            size="half",
            aggregation="last",
        ),
        counter_panel(
            title="Share of drifted text columns (last run)",
            values=[series("DriftedColumnsCount", "share", TAG_DRIFT, value_type="share")],
            size="half",
            aggregation="last",
        ),
        line_plot_panel(
            title="Text drift: share of drifted text columns",
            values=[series("DriftedColumnsCount", "share", TAG_DRIFT, value_type="share")],
            size="half",
        ),
        line_plot_panel(
            title="Prediction drift: distance of the predicted-label distribution to the reference",
            values=[series("ValueDrift", "prediction", TAG_DRIFT, column=PREDICTION)],
            size="half",
        ),
        line_plot_panel(
            title="Latency in the server (ms)",
            values=[
                series("QuantileValue", f"p{round(q * 100)}", TAG_OPS, column=LATENCY, quantile=str(q))
                for q in LATENCY_QUANTILES
            ],
            size="half",
        ),
        line_plot_panel(
            title="Cost: USD per 1,000 predictions",
            values=[series("MeanValue", "USD per 1k predictions", TAG_OPS, column="usd_per_1k")],
            size="half",
        ),
        line_plot_panel(
            title="Cost: USD per window",
            values=[series("SumValue", "USD", TAG_OPS, column="usd")],
            size="half",
        ),
        line_plot_panel(
            title="Quality: accuracy on labelled predictions",
            values=[series("Accuracy", "accuracy", TAG_QUALITY)],
            size="half",
        ),
    ]


def generation_panels() -> list[Any]:
    """The panels of a generator's dashboard (evidently.sdk.panels), declared once."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    from monitoring.generations import MS_PER_TOKEN, QUANTILES, TAG_GENERATION_OPS, TAG_OUTPUTS, TAG_PROMPTS

    def series(metric: str, legend: str, tag: str, **labels: str) -> Any:
        return PanelMetric(legend=legend, metric=_metric(metric), metric_labels=labels, tags=[tag])

    def share(tag: str, legend: str) -> Any:
        return series("DriftedColumnsCount", legend, tag, value_type="share")

    return [
        counter_panel(
            title="Generations per window",
            values=[series("RowCount", "generations", TAG_GENERATION_OPS)],
            size="half",
            aggregation="last",
        ),
        counter_panel(
            title="Generation drift: share of drifted prompt columns (last run)",
            values=[share(TAG_PROMPTS, "prompts")],
            size="half",
            aggregation="last",
        ),
        line_plot_panel(
            title="Generation drift: share of drifted prompt and output columns",
            values=[share(TAG_PROMPTS, "prompts"), share(TAG_OUTPUTS, "outputs")],
            size="half",
        ),
        line_plot_panel(
            title="Generated outputs: share empty and mean repeated n-gram share",
            values=[
                series("MeanValue", "empty", TAG_GENERATION_OPS, column="output_empty"),
                series("MeanValue", "repetition", TAG_GENERATION_OPS, column="output_repetition"),
            ],
            size="half",
        ),
        line_plot_panel(
            title="Latency per generated token (ms)",
            values=[
                series(
                    "QuantileValue",
                    f"p{round(q * 100)}",
                    TAG_GENERATION_OPS,
                    column=MS_PER_TOKEN,
                    quantile=str(q),
                )
                for q in QUANTILES
            ],
            size="half",
        ),
        line_plot_panel(
            title="Generated tokens per window",
            values=[series("SumValue", "tokens out", TAG_GENERATION_OPS, column="tokens_out")],
            size="half",
        ),
        line_plot_panel(
            title="Cost: USD per 1M generated tokens",
            values=[series("MeanValue", "USD per 1M tokens", TAG_GENERATION_OPS, column="usd_per_1m_tokens")],
            size="half",
        ),
    ]


def open_workspace(path: str | os.PathLike) -> Any:
    """The local workspace at ``path`` (created when absent)."""
    _evidently()
    from evidently.ui.workspace import Workspace

    os.makedirs(path, exist_ok=True)
    return Workspace.create(str(path))


def model_project(workspace: Any, version: str, kind: str = CLASSIFIER) -> Any:
    """The project of model ``version`` (``kind``: classifier or generator), created with its
    dashboard the first time."""
    name = project_name(version, kind)
    for project in workspace.search_project(name):
        if project.name == name:
            return project
    served = "generator" if kind == GENERATOR else "model"
    project = workspace.create_project(
        name, description=f"Continuous monitoring of the served {served} {version}"
    )
    for panel in generation_panels() if kind == GENERATOR else dashboard_panels():
        project.dashboard.add_panel(panel)
    return project


def add_snapshots(
    workspace: Any, version: str, snapshots: Mapping[str, Any], run_name: str, kind: str = CLASSIFIER
) -> dict[str, str]:
    """Add each ``{tag: snapshot}`` to the model's project; return ``{tag: snapshot id}``."""
    project = model_project(workspace, version, kind)
    ids = {}
    for tag, snapshot in snapshots.items():
        ref = workspace.add_run(project.id, snapshot, name=f"{run_name} {tag}")
        ids[tag] = str(ref.id)
    return ids
