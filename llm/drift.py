"""Evidently drift reports for text batches, and the verdict read back from them.

One report per batch compares ``current`` texts with ``reference`` texts on:

- the text itself, with Evidently's text drift test: a TF-IDF + linear "domain classifier" is
  trained to tell reference rows from current rows; its ROC AUC on a held-out half is the drift
  score (``abs_text_content_drift``: drifted when AUC > threshold, 0.55 by Evidently's default;
  ``perc_text_content_drift``: drifted when AUC beats the given percentile of random classifiers);
- the numeric features of ``llm.text_features`` (length, word count, ...), with a numeric
  stat test (``wasserstein``: the Wasserstein distance divided by the reference's standard
  deviation, drifted when >= threshold).

The methods are always set explicitly: Evidently's automatic choice switches method at 1,000
reference rows, which would make the same data judged differently at different sample sizes.

The batch verdict is Evidently's rule for dataset drift: drifted when the share of drifted
columns is >= ``drift_share``. It is read from the report by metric type and column name, never
by position, so adding metrics to the report cannot shift it.

The report is declared once (``build_report``: DataDriftPreset over the text columns) and read
once (``read_verdict``), for both users: the DAG's monitor stage (components.monitor, over the
text and ``llm.text_features``) and the continuous monitor (monitoring.reports, which adds its
descriptor columns and ValueDrift metrics of the prediction and score through ``columns`` and
``extra_metrics``; and monitoring.generations, over a generation's prompt text and the prompt's and
output's features, through ``columns`` and ``run_report``'s ``text`` columns). Both judge with the same thresholds, ``DriftParams``: the ``monitor`` section
of params.yaml.

Evidently is imported lazily (``_evidently``) with ``DO_NOT_TRACK=1`` set first: nothing here may
reach the network. Descriptors that download NLTK data (sentiment, OOV words) are not used. This
module imports neither Evidently nor pandas when imported (the params loader imports it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from components.common.params import check_fraction, check_positive
from llm.text_features import FEATURE_COLUMNS, text_features

# The params.yaml section that holds ``DriftParams`` (the DAG's monitor stage owns it; the
# continuous monitor reads the same section, so both judge drift alike).
SECTION = "monitor"

TEXT_COLUMN = "text"
# The columns the batch report compares: the text and its numeric features.
DRIFT_COLUMNS: tuple[str, ...] = (TEXT_COLUMN, *FEATURE_COLUMNS)
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"

# Evidently names each rendered report and widget with random ids (uuid4 / time-based uuid7);
# they only link widgets to their data inside the page.
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_METRIC_ID = re.compile(r"metric_[0-9a-f]{32}(?![0-9a-f])")

# Metric types as they appear in the report JSON (config.type), matched by suffix.
_DRIFTED_COLUMNS_COUNT = "DriftedColumnsCount"
_VALUE_DRIFT = "ValueDrift"

# Evidently's stat tests by name (evidently.legacy.calculations.stattests): the text tests train a
# TF-IDF domain classifier; the numeric ones compare the feature distributions.
TextMethod = Literal["abs_text_content_drift", "perc_text_content_drift"]
NumMethod = Literal[
    "wasserstein",
    "ks",
    "psi",
    "jensenshannon",
    "kl_div",
    "hellinger",
    "ed",
    "anderson",
    "cramer_von_mises",
    "mannw",
    "t_test",
    "empirical_mmd",
]


@dataclasses.dataclass(frozen=True)
class DriftParams:
    """The drift thresholds: the ``monitor`` section of params.yaml (the DAG's monitor stage and
    the continuous monitor judge with these). Defaults are tuned on the Rotten Tomatoes sample.

    Tuning (10 seeds; reference 1.3k-2k reviews, batches of 200 and 1k): held-out review batches
    score text AUC 0.46-0.55 and normed Wasserstein 0.02-0.18 per feature; plot-summary batches
    score AUC 0.81-0.94 and 0.25-11 per feature. With these thresholds all 20 plot batches drift
    on 5/5 columns and all 20 review batches on 0/5. Evidently's defaults (AUC 0.55, distance
    0.1) flag single review columns by chance (AUC 0.550 on movie-disjoint reviews, distance up
    to 0.17 on 200-row batches).
    """

    text_method: TextMethod = "abs_text_content_drift"  # Evidently test for the text column (name)
    text_threshold: float = 0.6  # abs: classifier ROC AUC above which text drifted; perc: confidence (0-1)
    num_method: NumMethod = "wasserstein"  # Evidently test for the numeric text features (name)
    num_threshold: float = 0.2  # wasserstein: distance in reference std units at which a feature drifted
    drift_share: float = 0.5  # share of compared columns that must drift to flag the batch (0-1, > 0)
    max_rows: int = 5000  # rows sampled (seeded, by hash of id) from the reference and from each batch (rows)
    min_rows: int = 50  # batches with fewer non-empty texts are skipped, not judged (rows)
    seed: int = 0  # seed of the row sampling (integer; same seed -> same sample)

    def __post_init__(self) -> None:
        check_positive(
            SECTION,
            text_threshold=self.text_threshold,
            num_threshold=self.num_threshold,
            drift_share=self.drift_share,
            max_rows=self.max_rows,
            min_rows=self.min_rows,
        )
        check_fraction(SECTION, text_threshold=self.text_threshold, drift_share=self.drift_share)
        if self.min_rows > self.max_rows:
            raise ValueError(
                f"{SECTION}.min_rows: must be <= max_rows ({self.max_rows}), got {self.min_rows!r}"
            )


@dataclasses.dataclass(frozen=True)
class DriftVerdict:
    """The verdict on one batch, read from its Evidently report.

    ``drift_share`` is the share of compared columns that drifted (0..1); ``scores`` maps each
    column to its drift score (ROC AUC for the text, normed distance or p-value for numbers,
    depending on the method).
    """

    drift_detected: bool
    drift_share: float
    drifted_columns: int
    columns: int
    scores: dict[str, float]


def _evidently() -> ModuleType:
    """Import Evidently with its usage telemetry switched off (it checks DO_NOT_TRACK per event)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import evidently

    return evidently


def feature_frame(texts: Sequence[str]):
    """A pandas DataFrame with the text column and one column per text feature."""
    import pandas as pd

    rows = [{TEXT_COLUMN: t, **text_features(t)} for t in texts]
    return pd.DataFrame(rows, columns=[TEXT_COLUMN, *FEATURE_COLUMNS])


def build_report(
    params: DriftParams,
    *,
    columns: Sequence[str] = DRIFT_COLUMNS,
    extra_metrics: Sequence[Any] = (),
    include_tests: bool = False,
):
    """The declared report: Evidently's DataDriftPreset over ``columns`` with the explicit methods
    and thresholds of ``params``, then ``extra_metrics`` (Evidently metrics, e.g. ValueDrift of
    other columns). ``include_tests``: attach Evidently's pass/fail tests to the metrics."""
    evidently = _evidently()
    from evidently.presets import DataDriftPreset

    preset = DataDriftPreset(
        columns=list(columns),
        text_method=params.text_method,
        text_threshold=params.text_threshold,
        num_method=params.num_method,
        num_threshold=params.num_threshold,
        drift_share=params.drift_share,
    )
    return evidently.Report([preset, *extra_metrics], include_tests=include_tests)


def run_report(
    report: Any,
    reference: Any,
    current: Any,
    *,
    numerical: Sequence[str] = FEATURE_COLUMNS,
    categorical: Sequence[str] = (),
    text: Sequence[str] = (TEXT_COLUMN,),
    timestamp: datetime | None = None,
    tags: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
):
    """Run a ``build_report`` report on two DataFrames holding the ``text`` columns (default
    ``TEXT_COLUMN``; none for a report over numbers only), the ``numerical`` and the ``categorical`` columns; return Evidently's snapshot, stamped with
    ``timestamp`` (default: now), ``tags`` and ``metadata``.

    Randomness inside Evidently's text test is seeded by Evidently itself (train/test split and
    classifier with random_state=42), so the same data gives the same scores.
    """
    evidently = _evidently()
    definition = evidently.DataDefinition(
        text_columns=list(text) or None,  # None, as Evidently's default, when there are none
        numerical_columns=list(numerical),
        categorical_columns=list(categorical) or None,  # None, as Evidently's default, when there are none
    )
    return report.run(
        current_data=evidently.Dataset.from_pandas(current, data_definition=definition),
        reference_data=evidently.Dataset.from_pandas(reference, data_definition=definition),
        timestamp=timestamp,
        tags=list(tags),
        metadata=dict(metadata or {}),
    )


def run_drift(reference_texts: Sequence[str], current_texts: Sequence[str], params: DriftParams):
    """The batch report (text and its features) of two lists of texts; Evidently's snapshot."""
    return run_report(build_report(params), feature_frame(reference_texts), feature_frame(current_texts))


def metric_type(metric: Mapping[str, Any]) -> str:
    # "evidently:metric_v2:DriftedColumnsCount" -> "DriftedColumnsCount"
    return str(metric.get("config", {}).get("type", "")).rsplit(":", 1)[-1]


def read_verdict(
    report: Mapping[str, Any], drift_share: float, columns: Sequence[str] | None = None
) -> DriftVerdict:
    """The batch verdict from a report dict (``snapshot.dict()``, what report.json holds).

    Reads the ``DriftedColumnsCount`` metric (count and share of drifted columns) and the
    ``ValueDrift`` metric (score) of every column in ``columns`` (default: every ValueDrift
    metric; pass the preset's columns when the report has other ValueDrift metrics), by type and
    column name. Drifted when share >= ``drift_share`` (Evidently's dataset-drift rule). Raises
    KeyError when the report has no DriftedColumnsCount metric.
    """
    wanted = None if columns is None else set(columns)
    counts = None
    scores: dict[str, float] = {}
    for metric in report.get("metrics", []):
        kind = metric_type(metric)
        if kind == _DRIFTED_COLUMNS_COUNT:
            counts = metric["value"]
        elif kind == _VALUE_DRIFT:
            column = str(metric["config"]["column"])
            if wanted is None or column in wanted:
                scores[column] = float(metric["value"])
    if counts is None:
        raise KeyError(f"report has no {_DRIFTED_COLUMNS_COUNT} metric")
    share = float(counts["share"])
    return DriftVerdict(
        drift_detected=share >= drift_share,
        drift_share=share,
        drifted_columns=int(counts["count"]),
        columns=len(scores),
        scores=dict(sorted(scores.items())),
    )


def stable_html_ids(html: str) -> str:
    """Replace Evidently's random page ids by counters in order of first appearance.

    Every occurrence of one id gets the same replacement, so the links inside the page still
    hold, and the same report renders to the same bytes (DVC caches outputs by content).
    """
    for pattern, fmt in ((_UUID, "00000000-0000-4000-8000-{:012d}"), (_METRIC_ID, "metric_{:032d}")):
        mapping: dict[str, str] = {}

        def replace(match: re.Match[str], mapping: dict[str, str] = mapping, fmt: str = fmt) -> str:
            return mapping.setdefault(match.group(0), fmt.format(len(mapping)))

        html = pattern.sub(replace, html)
    return html


def write_report(snapshot: Any, folder: str | os.PathLike) -> dict[str, Any]:
    """Write Evidently's own report.html and report.json into ``folder``; return the JSON dict.

    The HTML is Evidently's standalone page with its random ids made stable; the JSON is the
    snapshot's metrics/tests dict with sorted keys. Equal results give equal bytes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    html = stable_html_ids(snapshot.get_html_str(as_iframe=False))
    (folder / REPORT_HTML).write_text(html, encoding="utf-8")
    report = json.loads(snapshot.json())  # NumpyEncoder turns numpy scalars into plain numbers
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return report
