"""The Evidently workspace: one project per served model version, one snapshot per report per run.

A local folder (``evidently ui --workspace DIR`` shows it; ``make monitor-ui``). Each monitor run
adds its reports as snapshots, tagged by report (``drift``, ``ops``, ``quality``) and stamped with
the window's end, so the project's dashboard plots them over time. The dashboard is created with
the project:

- Predictions per window (counter, the last run);
- Text drift: share of drifted text columns, per run;
- Prediction drift: the predicted-label distance to the reference, per run;
- Latency: p50 / p95 / p99 server latency, per run;
- Cost: USD per 1M predictions and the window's cost in µUSD;
- Quality: accuracy on labelled predictions, or "No labels yet" until a window had labels;
- Return on investment (``roi_panels``; snapshots tagged ``roi`` by monitoring.roi): the live
  serving cost per 1k requests and per 1M tokens per window (mUSD), and the release's training
  cost and USD per macro-F1 point gained (over the previous version and the baseline), from the
  release's roi.json (select's figures) while this version is the release.

Per-run figures are bar plots (see ``dashboard_panels`` for why). ``add_snapshots`` keeps the
stored dashboard equal to the declared one (``declare_dashboard``), so the quality panel turns into
accuracy bars once labels arrive, and a workspace made by older code gets these panels.

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
from monitoring.roi import (
    MUSD_PER_1K_REQUESTS,
    MUSD_PER_1M_TOKENS,
    TAG_ROI,
    TRAINING_USD,
    USD_PER_POINT_VS_BASELINE,
    USD_PER_POINT_VS_PREVIOUS,
)

PROJECT_PREFIX = "sentiment model "  # + model version
GENERATOR_PROJECT_PREFIX = "generator model "  # + generator version
CLASSIFIER, GENERATOR = "classifier", "generator"  # project kinds
TAG_DRIFT, TAG_OPS, TAG_QUALITY = "drift", "ops", "quality"


def project_name(version: str, kind: str = CLASSIFIER) -> str:
    return f"{GENERATOR_PROJECT_PREFIX if kind == GENERATOR else PROJECT_PREFIX}{version}"


def _metric(name: str) -> str:
    return f"evidently:metric_v2:{name}"


def _series(metric: str, legend: str, tag: str, **labels: str) -> Any:
    from evidently.sdk.models import PanelMetric

    return PanelMetric(legend=legend, metric=_metric(metric), metric_labels=labels, tags=[tag])


QUALITY_TITLE = "Quality: accuracy on labelled predictions"
NO_LABELS = (
    "No labels yet. Accuracy is drawn here once labels for served predictions arrive "
    "(POST /feedback; a window needs monitoring.alerts.min_labels of them)."
)


def quality_panel(labelled: bool) -> Any:
    """Accuracy per window once a quality snapshot exists; before that a text panel saying so."""
    from evidently.sdk.panels import bar_plot_panel, text_panel

    if not labelled:
        return text_panel(title=QUALITY_TITLE, description=NO_LABELS, size="half")
    return bar_plot_panel(
        title=QUALITY_TITLE, values=[_series("Accuracy", "accuracy", TAG_QUALITY)], size="half"
    )


def roi_panels() -> list[Any]:
    """The return-on-investment panels of a model's dashboard: bars per window, as the others."""
    from evidently.sdk.panels import bar_plot_panel

    def mean(legend: str, column: str) -> Any:
        return _series("MeanValue", legend, TAG_ROI, column=column)

    return [
        bar_plot_panel(
            title="Serving cost (mUSD: thousandths of a US dollar) per 1k requests and per 1M tokens",
            values=[mean("per 1k requests", MUSD_PER_1K_REQUESTS), mean("per 1M tokens", MUSD_PER_1M_TOKENS)],
            description="Per window, live: the model's compute time at monitoring.prices.serve_usd_per_hour",
            size="half",
        ),
        bar_plot_panel(
            title="Release: training cost (USD)",
            values=[mean("training USD", TRAINING_USD)],
            description="The released version's recorded accelerator-hours at monitoring.prices (select's roi)",
            size="half",
        ),
        bar_plot_panel(
            title="Release: USD per macro-F1 point gained",
            values=[
                mean("vs previous version", USD_PER_POINT_VS_PREVIOUS),
                mean("vs baseline", USD_PER_POINT_VS_BASELINE),
            ],
            description="Training USD over the macro-F1 points gained (select's roi); no bar: no gain or unknown",
            size="half",
        ),
    ]


def dashboard_panels(labelled: bool = False) -> list[Any]:
    """The panels of a model's dashboard (evidently.sdk.panels), declared once; ``labelled``: the
    project has a quality snapshot (else the quality panel says there are no labels yet).

    Per-window figures are bars: the UI's line plot of one point (or of equal points) labels its
    axis with that value rounded to an integer (0.134 read "0"), and its counters round to two
    decimals and print 0 as "no value" (USD 8e-5 read "0"); a bar's axis starts at 0 and is
    labelled at the data's own scale. Its labels are cut after about five characters, so costs are
    in units that print short (USD per 1M predictions, µUSD per window). Only the row count, never
    0 in a run, is a counter."""
    from evidently.sdk.panels import bar_plot_panel, counter_panel, line_plot_panel

    return [
        counter_panel(
            title="Predictions per window",
            values=[_series("RowCount", "predictions", TAG_OPS)],
            size="half",
            aggregation="last",
        ),
        bar_plot_panel(
            title="Text drift: share of drifted text columns",
            values=[_series("DriftedColumnsCount", "share", TAG_DRIFT, value_type="share")],
            description="Per window: text, its features and descriptors (0-1; the alert: monitor.drift_share)",
            size="half",
        ),
        bar_plot_panel(
            title="Prediction drift: distance of the predicted-label distribution to the reference",
            values=[_series("ValueDrift", "prediction", TAG_DRIFT, column=PREDICTION)],
            description="Per window (0 = the reference's distribution; the alert: monitoring.prediction_threshold)",
            size="half",
        ),
        line_plot_panel(
            title="Latency in the server (ms)",
            values=[
                _series("QuantileValue", f"p{round(q * 100)}", TAG_OPS, column=LATENCY, quantile=str(q))
                for q in LATENCY_QUANTILES
            ],
            size="half",
        ),
        bar_plot_panel(
            title="Cost: USD per 1M predictions",
            values=[_series("MeanValue", "USD per 1M predictions", TAG_OPS, column="micro_usd")],
            description="Per window: the model's compute time at monitoring.prices.serve_usd_per_hour",
            size="half",
        ),
        bar_plot_panel(
            title="Cost per window (µUSD: millionths of a US dollar)",
            values=[_series("SumValue", "µUSD", TAG_OPS, column="micro_usd")],
            size="half",
        ),
        quality_panel(labelled),
        *roi_panels(),
    ]


def generation_panels() -> list[Any]:
    """The panels of a generator's dashboard (evidently.sdk.panels), declared once; per-window
    figures are bars, as in ``dashboard_panels``."""
    from evidently.sdk.panels import bar_plot_panel, counter_panel, line_plot_panel

    from monitoring.generations import MS_PER_TOKEN, QUANTILES, TAG_GENERATION_OPS, TAG_OUTPUTS, TAG_PROMPTS

    def share(tag: str, legend: str) -> Any:
        return _series("DriftedColumnsCount", legend, tag, value_type="share")

    return [
        counter_panel(
            title="Generations per window",
            values=[_series("RowCount", "generations", TAG_GENERATION_OPS)],
            size="half",
            aggregation="last",
        ),
        bar_plot_panel(
            title="Generation drift: share of drifted prompt and output columns",
            values=[share(TAG_PROMPTS, "prompts"), share(TAG_OUTPUTS, "outputs")],
            size="half",
        ),
        bar_plot_panel(
            title="Generated outputs: share empty and mean repeated n-gram share",
            values=[
                _series("MeanValue", "empty", TAG_GENERATION_OPS, column="output_empty"),
                _series("MeanValue", "repetition", TAG_GENERATION_OPS, column="output_repetition"),
            ],
            size="half",
        ),
        line_plot_panel(
            title="Latency per generated token (ms)",
            values=[
                _series(
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
        bar_plot_panel(
            title="Generated tokens per window",
            values=[_series("SumValue", "tokens out", TAG_GENERATION_OPS, column="tokens_out")],
            size="half",
        ),
        bar_plot_panel(
            title="Cost: USD per 1M generated tokens",
            values=[
                _series("MeanValue", "USD per 1M tokens", TAG_GENERATION_OPS, column="usd_per_1m_tokens")
            ],
            size="half",
        ),
    ]


def open_workspace(path: str | os.PathLike) -> Any:
    """The local workspace at ``path`` (created when absent)."""
    _evidently()
    from evidently.ui.workspace import Workspace

    os.makedirs(path, exist_ok=True)
    return Workspace.create(str(path))


def _signature(panels: Any) -> list[tuple]:
    return [
        (p.title, p.subtitle, p.plot_params.get("plot_type"), [v.dict() for v in p.values]) for p in panels
    ]


def declare_dashboard(workspace: Any, project_id: Any, panels: list[Any]) -> bool:
    """Make the project's dashboard exactly ``panels`` (one tab); True when it had to be rewritten
    (a new project, labels that arrived, or a workspace made by an older version of this code)."""
    from evidently.sdk.models import DashboardModel, DashboardTabModel

    if _signature(workspace.get_dashboard(project_id).panels) == _signature(panels):
        return False
    tab = DashboardTabModel(title="General", panels=[p.id for p in panels])
    workspace.save_dashboard(project_id, DashboardModel(tabs=[tab], panels=panels))
    return True


def _labelled(workspace: Any, project_id: Any) -> bool:
    """Whether the dashboard already draws accuracy (a quality snapshot came in an earlier run)."""
    return any(
        p.title == QUALITY_TITLE and p.plot_params.get("plot_type") != "text"
        for p in workspace.get_dashboard(project_id).panels
    )


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
    declare_dashboard(workspace, project.id, generation_panels() if kind == GENERATOR else dashboard_panels())
    return project


def add_snapshots(
    workspace: Any, version: str, snapshots: Mapping[str, Any], run_name: str, kind: str = CLASSIFIER
) -> dict[str, str]:
    """Add each ``{tag: snapshot}`` to the model's project; return ``{tag: snapshot id}``. The
    dashboard is then the declared one: with the accuracy panel once a quality snapshot came."""
    project = model_project(workspace, version, kind)
    ids = {}
    for tag, snapshot in snapshots.items():
        ref = workspace.add_run(project.id, snapshot, name=f"{run_name} {tag}")
        ids[tag] = str(ref.id)
    if kind == GENERATOR:
        declare_dashboard(workspace, project.id, generation_panels())
    else:
        labelled = TAG_QUALITY in snapshots or _labelled(workspace, project.id)
        declare_dashboard(workspace, project.id, dashboard_panels(labelled=labelled))
    return ids
