"""Robust corpus statistics for ``outlier:<feature>`` drops, as pure, mergeable pieces.

Each feature value is counted in a fixed-width bin (``RESOLUTION``), so a histogram is a dict of
integer counts: merging two is adding counts, which is exact and independent of order; that makes
the statistics a deterministic Beam ``CombineFn`` at any scale. From a histogram come the median and
the median absolute deviation (MAD), both to within one bin. A document is an outlier on a feature
when ``|x - median| > z * max(1.4826 * MAD, min_scale)``: 1.4826 * MAD estimates the standard
deviation of a normal distribution (Rousseeuw & Croux 1993), and ``min_scale`` keeps a feature that
is nearly constant (most documents with no repeated 5-gram) from flagging every document that is
not exactly at the median.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

# Bin width per feature (feature units). Fine enough that the bin error is far below the limits.
RESOLUTION = {
    "length": 0.001,  # log10 characters
    "mean_word_length": 0.001,  # characters
    "symbol_ratio": 0.0001,
    "digit_ratio": 0.0001,
    "uppercase_ratio": 0.0001,
    "repetition": 0.0001,
}
MAD_TO_SIGMA = 1.4826

Histograms = dict[str, Counter]


def bin_of(feature: str, value: float) -> int:
    return math.floor(value / RESOLUTION[feature])


def center(feature: str, b: int) -> float:
    return (b + 0.5) * RESOLUTION[feature]


def add(hists: Histograms, features: Mapping[str, float]) -> Histograms:
    for name, value in features.items():
        if name in RESOLUTION:
            hists.setdefault(name, Counter())[bin_of(name, value)] += 1
    return hists


def merge(all_hists: Iterable[Histograms]) -> Histograms:
    out: Histograms = {}
    for hists in all_hists:
        for name, counts in hists.items():
            out.setdefault(name, Counter()).update(counts)
    return out


def _weighted_median(pairs: list[tuple[float, int]]) -> float:
    """Lower median of values with counts (``pairs`` sorted by value)."""
    total = sum(c for _, c in pairs)
    half = (total + 1) // 2
    seen = 0
    for value, count in pairs:
        seen += count
        if seen >= half:
            return value
    return pairs[-1][0] if pairs else 0.0


def median_mad(feature: str, counts: Mapping[int, int]) -> tuple[float, float]:
    """Median and MAD of a histogram (bin centres), deterministic."""
    if not counts:
        return 0.0, 0.0
    med = _weighted_median([(center(feature, b), c) for b, c in sorted(counts.items())])
    deviations = sorted((abs(center(feature, b) - med), c) for b, c in counts.items())
    return med, _weighted_median(deviations)


def limits(hists: Histograms, n_docs: int, cfg: Any) -> dict[str, Any]:
    """Per feature ``{median, mad, low, high}``; ``active`` False when there are too few documents.

    ``cfg`` is ``params.Outliers`` (``features``, ``z``, ``min_docs``, ``min_scale``).
    """
    out: dict[str, Any] = {"documents": n_docs, "active": bool(cfg.enabled and n_docs >= cfg.min_docs)}
    features = {}
    for name in cfg.features:
        med, mad = median_mad(name, hists.get(name, {}))
        scale = max(MAD_TO_SIGMA * mad, cfg.min_scale.get(name, 0.0))
        features[name] = {
            "median": round(med, 6),
            "mad": round(mad, 6),
            "low": round(med - cfg.z * scale, 6),
            "high": round(med + cfg.z * scale, 6),
        }
    out["features"] = features
    return out


def outlier_reason(features: Mapping[str, float], stats: Mapping[str, Any]) -> str | None:
    """``outlier:<feature>`` for the first feature outside its limits, or None (also when inactive)."""
    if not stats.get("active"):
        return None
    for name, lim in stats["features"].items():
        value = features.get(name)
        if value is not None and not lim["low"] <= value <= lim["high"]:
            return f"outlier:{name}"
    return None
