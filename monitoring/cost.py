"""Cost accounting: what serving a window cost, next to what training the model cost.

Pure functions of counts, seconds and prices (``monitoring.prices``), so every figure can be checked
by hand:

- serving: ``compute_seconds`` is the model's busy time (each text's share of its forward pass,
  summed from the prediction log), priced at ``serve_usd_per_hour``. This is what the requests
  consumed; an idle replica costs its hours whether or not requests come.
- per unit: USD per 1,000 requests (HTTP requests, one or more texts each) and per 1,000,000
  tokens read by the model.
- training: the wall seconds recorded by the pretrain and finetune stages in their metrics.json
  (``seconds``; ``train_seconds`` when that is all there is), priced at ``train_usd_per_hour``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SECONDS_PER_HOUR = 3600.0


def serving_cost(
    requests: int, predictions: int, tokens: int, compute_seconds: float, usd_per_hour: float
) -> dict[str, Any]:
    """Cost figures of one window. Per-unit figures are None when there is no unit to divide by."""
    usd = compute_seconds / SECONDS_PER_HOUR * usd_per_hour
    return {
        "requests": int(requests),
        "predictions": int(predictions),
        "tokens": int(tokens),
        "compute_seconds": float(compute_seconds),
        "usd": usd,
        "usd_per_1k_requests": usd / requests * 1_000 if requests else None,
        "usd_per_1m_tokens": usd / tokens * 1_000_000 if tokens else None,
        "usd_per_hour": float(usd_per_hour),
    }


def stage_seconds(metrics: Mapping[str, Any] | None) -> float | None:
    """The wall seconds a stage recorded in its metrics.json, or None if it recorded none."""
    if not metrics:
        return None
    for key in ("seconds", "train_seconds"):
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def training_cost(seconds: Mapping[str, float | None], usd_per_hour: float) -> dict[str, Any]:
    """``{"<stage>_seconds": s, ..., "seconds": total, "usd": total * price}`` over the stages
    whose seconds are known (a stage with None is listed, and left out of the total)."""
    known = {stage: s for stage, s in seconds.items() if s is not None}
    total = sum(known.values())
    out: dict[str, Any] = {f"{stage}_seconds": s for stage, s in seconds.items()}
    out.update(
        seconds=total,
        usd=total / SECONDS_PER_HOUR * usd_per_hour,
        usd_per_hour=float(usd_per_hour),
        stages_missing=sorted(stage for stage, s in seconds.items() if s is None),
    )
    return out
