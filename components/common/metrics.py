"""Metrics and plots files that DVC shows (`dvc metrics show`, `dvc plots show`) and that the
Kubeflow components copy into their Metrics artifact."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from components.common.io import write_json

METRICS_FILE = "metrics.json"


def _clean(value: Any) -> Any:
    """Round floats (stable diffs in `dvc metrics diff`) and turn NaN/inf into None."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_metrics(output_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``output_dir/metrics.json``; return the cleaned dict."""
    cleaned = _clean(dict(metrics))
    write_json(Path(output_dir) / METRICS_FILE, cleaned)
    return cleaned


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves as {"a.b": 1.0} (KFP Metrics artifacts take flat scalar entries)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, bool) or isinstance(value, int | float) and value is not None:
            flat[name] = float(value)
    return flat


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], fields: list[str]) -> None:
    """A DVC plots file (CSV with a header)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _clean(row[k]) for k in fields})
