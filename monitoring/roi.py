"""Return on investment per served model version: the live serving cost of each window beside what
the release cost to train and what it bought.

- live (every window, every version): USD per 1,000 requests and per 1,000,000 tokens, from the
  window's cost (``monitoring.cost.serving_cost``: the model's compute time in the prediction log
  at ``monitoring.prices.serve_usd_per_hour``);
- the release (the version deploy released, from its bundle's ``roi.json``: select's decision.json
  ``roi`` block, ``components.select.roi``): training accelerator-hours and USD, macro-F1 against
  the version promoted before and the baseline (points), and USD per macro-F1 point gained. A
  version the window served that is not the release (an older replica) gets the live figures only.

``roi_report`` turns one version's figures into an Evidently snapshot (tag ``roi``) of one row,
so the workspace dashboard plots them per window (monitoring.workspace ``roi_panels``). The
serving figures are in mUSD (thousandths of a USD): per 1k requests they are around 1e-4 USD on
the demo, which a dashboard axis would print as 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from components.common import artifacts
from components.common.io import read_json

TAG_ROI = "roi"
# The columns of the roi snapshot's one row: (column, label in the report).
MUSD_PER_1K_REQUESTS = "musd_per_1k_requests"
MUSD_PER_1M_TOKENS = "musd_per_1m_tokens"
TRAINING_USD = "training_usd"
USD_PER_POINT_VS_PREVIOUS = "usd_per_point_vs_previous"
USD_PER_POINT_VS_BASELINE = "usd_per_point_vs_baseline"
COLUMNS: tuple[tuple[str, str], ...] = (
    (MUSD_PER_1K_REQUESTS, "serving mUSD per 1k requests (this window)"),
    (MUSD_PER_1M_TOKENS, "serving mUSD per 1M tokens (this window)"),
    (TRAINING_USD, "training USD (the release)"),
    (USD_PER_POINT_VS_PREVIOUS, "USD per macro-F1 point vs the previous version"),
    (USD_PER_POINT_VS_BASELINE, "USD per macro-F1 point vs the baseline"),
)
NO_RELEASE = "no release given (--release / release_uri)"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def release_figures(roi_file: Mapping[str, Any] | None) -> dict[str, Any]:
    """The release's figures from its ``roi.json`` (deploy): ``{version, model, variant,
    training_accelerator_hours, training_usd, training_note, macro_f1, macro_f1_points_vs_previous,
    macro_f1_points_vs_baseline, usd_per_point_vs_previous (+ _reason), usd_per_point_vs_baseline
    (+ _reason)}``; ``{skipped: reason}`` without one."""
    if not roi_file:
        return {"skipped": NO_RELEASE}
    roi = roi_file.get("roi")
    if not roi:
        return {"version": roi_file.get("version"), "skipped": roi_file.get("note") or "no roi block"}
    training = roi.get("training_cost") or {}
    quality = roi.get("quality") or {}
    per_point = roi.get("usd_per_macro_f1_point") or {}
    return {
        "version": roi_file.get("version"),
        "model": roi.get("model"),
        "variant": roi.get("variant"),
        "training_accelerator_hours": _number(training.get("accelerator_hours")),
        "training_usd": _number(training.get("usd")),
        "training_note": training.get("note"),
        "macro_f1": _number(quality.get("macro_f1")),
        "macro_f1_points_vs_previous": _number((quality.get("previous") or {}).get("delta_points")),
        "macro_f1_points_vs_baseline": _number((quality.get("baseline") or {}).get("delta_points")),
        "usd_per_point_vs_previous": _number(per_point.get("vs_previous")),
        "usd_per_point_vs_previous_reason": per_point.get("vs_previous_reason"),
        "usd_per_point_vs_baseline": _number(per_point.get("vs_baseline")),
        "usd_per_point_vs_baseline_reason": per_point.get("vs_baseline_reason"),
    }


def read_release(release: str | os.PathLike | None) -> dict[str, Any]:
    """``release_figures`` of the deploy output folder ``release`` (a path or fsspec URI; its
    ``roi.json``); ``{skipped}`` when not given or when the bundle has no roi.json."""
    if not release:
        return release_figures(None)
    path = f"{str(release).rstrip('/')}/{artifacts.ROI}"
    try:
        return release_figures(read_json(path))
    except FileNotFoundError:
        return {"skipped": f"no {artifacts.ROI} in {release} (a release bundled before ROI figures)"}


def version_roi(version: str, cost: Mapping[str, Any], release: Mapping[str, Any] | None) -> dict[str, Any]:
    """One version's ROI figures of a window: the live serving cost from ``cost`` (the window's
    ``serving_cost``) and, when ``version`` is the release's, the release's figures."""
    out: dict[str, Any] = {
        "usd_per_1k_requests": _number(cost.get("usd_per_1k_requests")),
        "usd_per_1m_tokens": _number(cost.get("usd_per_1m_tokens")),
        "serving_basis": "live: this window's model compute time at monitoring.prices.serve_usd_per_hour",
    }
    release = release or {}
    if release.get("version") == version and "skipped" not in release:
        out["release"] = {k: v for k, v in release.items() if k != "version"}
    else:
        out["release"] = None
        out["release_reason"] = release.get("skipped") or (
            f"not the released version ({release.get('version')})" if release.get("version") else NO_RELEASE
        )
    return out


def roi_row(figures: Mapping[str, Any]) -> dict[str, float]:
    """The known figures of ``version_roi`` as the roi snapshot's columns (serving in mUSD)."""
    release = figures.get("release") or {}
    row = {
        MUSD_PER_1K_REQUESTS: None
        if figures.get("usd_per_1k_requests") is None
        else figures["usd_per_1k_requests"] * 1e3,
        MUSD_PER_1M_TOKENS: None
        if figures.get("usd_per_1m_tokens") is None
        else figures["usd_per_1m_tokens"] * 1e3,
        TRAINING_USD: release.get("training_usd"),
        USD_PER_POINT_VS_PREVIOUS: release.get("usd_per_point_vs_previous"),
        USD_PER_POINT_VS_BASELINE: release.get("usd_per_point_vs_baseline"),
    }
    return {k: float(v) for k, v in row.items() if v is not None}


def roi_report(
    figures: Mapping[str, Any], timestamp: datetime | None = None, tags=(TAG_ROI,), metadata=None
) -> Any | None:
    """An Evidently snapshot of one row: the mean of each known figure (``roi_row``), shown as one
    counter widget (monitoring.figures); None when no figure is known (no requests, no release)."""
    from llm.drift import _evidently

    row = roi_row(figures)
    if not row:
        return None
    evidently = _evidently()
    import pandas as pd

    from monitoring.figures import MEAN, Figures

    columns = [c for c, _ in COLUMNS if c in row]
    labels = dict(COLUMNS)
    frame = pd.DataFrame([{c: row[c] for c in columns}])
    report = evidently.Report(
        [Figures(title="Return on investment", figures=[(labels[c], MEAN, c) for c in columns])]
    )
    definition = evidently.DataDefinition(numerical_columns=columns)
    return report.run(
        current_data=evidently.Dataset.from_pandas(frame, data_definition=definition),
        reference_data=None,
        timestamp=timestamp,
        tags=list(tags),
        metadata=dict(metadata or {}),
    )
