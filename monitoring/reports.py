"""The Evidently reports of a continuous-monitor run, and the figures read back from them.

Three reports per model version and window, declared once here:

- ``drift`` (current window sample vs the reference = evaluation predictions): the floor's drift
  report (``llm.drift.build_report``, the one the DAG's monitor stage runs) over the text and its
  descriptors (length, word count, word length, non-letter share, sentiment, OOV share;
  ``TEXT_DRIFT_COLUMNS``), plus ValueDrift of the predicted label and of the score. The text
  verdict is ``llm.drift.read_verdict`` over the text columns (the batch stage's rule); the
  prediction verdict is the ValueDrift test's status. Thresholds: the ``monitor`` section
  (``DriftParams``) for the text and the score, ``monitoring`` (``Settings``) for the prediction.
- ``ops`` (every row of the window, vs the previous window when it has enough rows): row count,
  latency mean and quantiles, compute, tokens and cost sums, and ValueDrift of latency. These
  are what the dashboard plots over time.
  Latency thresholds: ``monitoring.latency_method`` / ``latency_threshold``.
- ``quality`` (labelled rows vs the labelled reference), for binary models: Evidently's
  ClassificationPreset. Accuracy and macro-F1 themselves are computed by
  ``llm.scoring`` (also for more than two labels).

Every report is built with ``include_tests=True``: Evidently then attaches a pass/fail test to
each ValueDrift metric, and the drift verdict of a column is read from that test (so p-value
tests, drifted when *below* the threshold, and distances, drifted when above, need no special
case here). Values are read by metric type and column name, never by position.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from llm.drift import (
    TEXT_COLUMN,
    DriftParams,
    _evidently,
    build_report,
    metric_type,
    read_verdict,
    run_report,
)
from llm.text_features import FEATURE_COLUMNS, text_features
from monitoring.descriptors import DESCRIPTOR_COLUMNS, descriptor_values
from monitoring.settings import Settings

TEXT_DRIFT_COLUMNS: tuple[str, ...] = (TEXT_COLUMN, *FEATURE_COLUMNS, *DESCRIPTOR_COLUMNS)
PREDICTION = "prediction"
SCORE = "score"
LABEL = "label"
LATENCY = "latency_ms"
# Per-row operational columns of the ops report (micro_usd: the row's cost in millionths of a USD,
# so its mean is USD per 1M predictions and its sum the window's cost in µUSD: numbers a dashboard
# axis can print, where USD per row is around 1e-7).
OPS_COLUMNS: tuple[str, ...] = (LATENCY, "compute_ms", "tokens", "usd", "micro_usd")
LATENCY_QUANTILES = (0.5, 0.95, 0.99)


def text_frame(texts: Sequence[str], predictions: Sequence[str], scores: Sequence[float]):
    """DataFrame: text, its features and descriptors, the predicted label and its score."""
    import pandas as pd

    frame = pd.DataFrame([text_features(t) for t in texts], columns=list(FEATURE_COLUMNS))
    for name, values in descriptor_values(texts).items():
        frame[name] = values
    frame.insert(0, TEXT_COLUMN, list(texts))
    frame[PREDICTION] = list(predictions)
    frame[SCORE] = [float(s) for s in scores]
    return frame


def run_drift_report(
    reference: Any,
    current: Any,
    drift_params: DriftParams,
    settings: Settings,
    timestamp: datetime | None = None,
    tags=(),
    metadata=None,
    columns: Sequence[str] = TEXT_DRIFT_COLUMNS,
):
    """The drift report of ``current`` against ``reference`` (``text_frame`` frames); a Snapshot.

    The floor's drift report over the text ``columns`` (default ``TEXT_DRIFT_COLUMNS``: the text,
    its features and descriptors), plus ValueDrift of the prediction
    (``settings.prediction_method``) and of the score (the numeric test of ``drift_params``)."""
    _evidently()
    from evidently.metrics import ValueDrift

    report = build_report(
        drift_params,
        columns=columns,
        extra_metrics=[
            ValueDrift(
                column=PREDICTION, method=settings.prediction_method, threshold=settings.prediction_threshold
            ),
            ValueDrift(column=SCORE, method=drift_params.num_method, threshold=drift_params.num_threshold),
        ],
        include_tests=True,
    )
    return run_report(
        report,
        reference,
        current,
        numerical=[*FEATURE_COLUMNS, *DESCRIPTOR_COLUMNS, SCORE],
        categorical=[PREDICTION],
        timestamp=timestamp,
        tags=tags,
        metadata=metadata,
    )


def _value_drift(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{column: {"score", "method", "threshold", "drift_detected"}} of every ValueDrift metric.

    ``drift_detected`` comes from the metric's Evidently test (FAIL = drifted); None when the
    report has no test for it.
    """
    out: dict[str, dict[str, Any]] = {}
    for metric in report.get("metrics", []):
        if metric_type(metric) == "ValueDrift":
            config = metric["config"]
            out[str(config["column"])] = {
                "score": float(metric["value"]),
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "drift_detected": None,
            }
    for test in report.get("tests", []):
        params = (test.get("metric_config") or {}).get("params") or {}
        if str(params.get("type", "")).endswith(":ValueDrift") and params.get("column") in out:
            out[params["column"]]["drift_detected"] = test.get("status") == "FAIL"
    return out


def read_drift(
    report: Mapping[str, Any], drift_share: float, columns: Sequence[str] = TEXT_DRIFT_COLUMNS
) -> dict[str, Any]:
    """The text verdict (``llm.drift.read_verdict`` over the text ``columns`` the report was built
    with), prediction drift and score drift of a drift report (its JSON dict)."""
    verdict = read_verdict(report, drift_share, columns=columns)
    drifts = _value_drift(report)
    return {
        "drift": {
            "drift_detected": verdict.drift_detected,
            "drift_share": verdict.drift_share,
            "drift_share_threshold": drift_share,
            "drifted_columns": verdict.drifted_columns,
            "columns": verdict.columns,
            "scores": verdict.scores,
        },
        "prediction_drift": drifts[PREDICTION],
        "score_drift": drifts[SCORE],
    }


def run_ops_report(
    current: Any,
    previous: Any | None,
    settings: Settings,
    timestamp: datetime | None = None,
    tags=(),
    metadata=None,
):
    """Row count, latency and cost figures of ``current`` (every row of the window, with
    ``OPS_COLUMNS``); with ``previous`` (the window before), also latency drift
    (``settings.latency_method`` / ``latency_threshold``)."""
    evidently = _evidently()
    from evidently.metrics import RowCount, ValueDrift

    from monitoring.figures import MEAN, SUM, Figures

    # The latency and cost figures, each group as one widget with one histogram (monitoring.figures):
    # Evidently alone draws a latency histogram per statistic and prints costs at 3 decimals (0.000).
    latency = [("mean", MEAN, LATENCY)] + [(f"p{round(q * 100)}", str(q), LATENCY) for q in LATENCY_QUANTILES]
    cost = [
        ("USD in the window", SUM, "usd"),
        ("the same in µUSD (millionths)", SUM, "micro_usd"),
        ("USD per 1M predictions", MEAN, "micro_usd"),
        ("model compute (ms)", SUM, "compute_ms"),
        ("tokens", SUM, "tokens"),
    ]
    metrics: list[Any] = [
        RowCount(),
        Figures(title="Server latency (ms)", figures=latency, histogram=LATENCY),
        Figures(title="Cost and usage", figures=cost),
    ]
    if previous is not None:
        metrics.append(
            ValueDrift(column=LATENCY, method=settings.latency_method, threshold=settings.latency_threshold)
        )
    definition = evidently.DataDefinition(numerical_columns=list(OPS_COLUMNS))
    report = evidently.Report(metrics, include_tests=previous is not None)
    return report.run(
        current_data=evidently.Dataset.from_pandas(current[list(OPS_COLUMNS)], data_definition=definition),
        reference_data=(
            None
            if previous is None
            else evidently.Dataset.from_pandas(previous[list(OPS_COLUMNS)], data_definition=definition)
        ),
        timestamp=timestamp,
        tags=list(tags),
        metadata=dict(metadata or {}),
    )


def read_latency_drift(report: Mapping[str, Any]) -> dict[str, Any] | None:
    return _value_drift(report).get(LATENCY)


def run_quality_report(
    reference: Any, current: Any, labels: Sequence[str], timestamp=None, tags=(), metadata=None
):
    """Evidently's ClassificationPreset on labelled rows (columns ``label`` and ``prediction``),
    for binary models (positive class: the last label); None for more than two labels."""
    if len(labels) != 2:
        return None
    evidently = _evidently()
    from evidently.presets import ClassificationPreset

    definition = evidently.DataDefinition(
        categorical_columns=[LABEL, PREDICTION],
        classification=[
            evidently.BinaryClassification(target=LABEL, prediction_labels=PREDICTION, pos_label=labels[-1])
        ],
    )
    report = evidently.Report([ClassificationPreset()])
    return report.run(
        current_data=evidently.Dataset.from_pandas(current[[LABEL, PREDICTION]], data_definition=definition),
        reference_data=evidently.Dataset.from_pandas(
            reference[[LABEL, PREDICTION]], data_definition=definition
        ),
        timestamp=timestamp,
        tags=list(tags),
        metadata=dict(metadata or {}),
    )


def combined_html(pages: Sequence[str | os.PathLike], html_path: str | os.PathLike) -> Path:
    """One page of a run's reports for the KFP UI's HTML viewer: each ``<version>/<report>/report.html``
    of ``pages`` in an iframe under the heading ``<version>: <report>``, in the given order."""
    from components.common.html import write_iframe_page

    paths = [Path(p) for p in pages]
    return write_iframe_page(((f"{p.parent.parent.name}: {p.parent.name}", p) for p in paths), html_path)


def run_pages(folder: str | os.PathLike) -> list[Path]:
    """Every report page of a run folder (``<version>/<report>/report.html``), sorted."""
    return sorted(Path(folder).glob("*/*/report.html"))
