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

Evidently is imported lazily (``_evidently``) with ``DO_NOT_TRACK=1`` set first: nothing here may
reach the network. Descriptors that download NLTK data (sentiment, OOV words) are not used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from llm.text_features import FEATURE_COLUMNS, text_features

TEXT_COLUMN = "text"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"

# Evidently names each rendered report and widget with random ids (uuid4 / time-based uuid7);
# they only link widgets to their data inside the page.
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_METRIC_ID = re.compile(r"metric_[0-9a-f]{32}(?![0-9a-f])")

# Metric types as they appear in the report JSON (config.type), matched by suffix.
_DRIFTED_COLUMNS_COUNT = "DriftedColumnsCount"
_VALUE_DRIFT = "ValueDrift"


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
    *,
    text_method: str,
    text_threshold: float,
    num_method: str,
    num_threshold: float,
    drift_share: float,
):
    """The declared report: Evidently's DataDriftPreset with explicit methods and thresholds."""
    evidently = _evidently()
    from evidently.presets import DataDriftPreset

    preset = DataDriftPreset(
        columns=[TEXT_COLUMN, *FEATURE_COLUMNS],
        text_method=text_method,
        text_threshold=text_threshold,
        num_method=num_method,
        num_threshold=num_threshold,
        drift_share=drift_share,
    )
    return evidently.Report([preset])


def run_drift(
    reference_texts: Sequence[str],
    current_texts: Sequence[str],
    *,
    text_method: str,
    text_threshold: float,
    num_method: str,
    num_threshold: float,
    drift_share: float,
):
    """Run the drift report on two lists of texts; return Evidently's snapshot.

    Randomness inside Evidently's text test is seeded by Evidently itself (train/test split and
    classifier with random_state=42), so the same texts give the same scores.
    """
    evidently = _evidently()
    definition = evidently.DataDefinition(text_columns=[TEXT_COLUMN], numerical_columns=list(FEATURE_COLUMNS))
    reference = evidently.Dataset.from_pandas(feature_frame(reference_texts), data_definition=definition)
    current = evidently.Dataset.from_pandas(feature_frame(current_texts), data_definition=definition)
    report = build_report(
        text_method=text_method,
        text_threshold=text_threshold,
        num_method=num_method,
        num_threshold=num_threshold,
        drift_share=drift_share,
    )
    return report.run(current_data=current, reference_data=reference)


def _metric_type(metric: Mapping[str, Any]) -> str:
    # "evidently:metric_v2:DriftedColumnsCount" -> "DriftedColumnsCount"
    return str(metric.get("config", {}).get("type", "")).rsplit(":", 1)[-1]


def read_verdict(report: Mapping[str, Any], drift_share: float) -> DriftVerdict:
    """The batch verdict from a report dict (``snapshot.dict()``, what report.json holds).

    Reads the ``DriftedColumnsCount`` metric (count and share of drifted columns) and every
    ``ValueDrift`` metric (score per column) by type and column name. Drifted when
    share >= ``drift_share`` (Evidently's dataset-drift rule). Raises KeyError when the report
    has no DriftedColumnsCount metric.
    """
    counts = None
    scores: dict[str, float] = {}
    for metric in report.get("metrics", []):
        kind = _metric_type(metric)
        if kind == _DRIFTED_COLUMNS_COUNT:
            counts = metric["value"]
        elif kind == _VALUE_DRIFT:
            scores[str(metric["config"]["column"])] = float(metric["value"])
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
