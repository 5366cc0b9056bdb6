"""Cost accounting: what serving a window cost, next to what training the model cost.

Pure functions of counts, seconds and prices (``monitoring.prices``), so every figure can be checked
by hand. ``monitoring.prices`` is the one price source: the stages record time, never dollars.

- serving: ``compute_seconds`` is the model's busy time (each text's share of its forward pass,
  summed from the prediction log), priced at ``serve_usd_per_hour``. This is what the requests
  consumed; an idle replica costs its hours whether or not requests come.
- per unit: USD per 1,000 requests (HTTP requests, one or more texts each) and per 1,000,000
  tokens read by the model.
- generations (``generation_cost``): the model seconds of the /generate requests (each request's
  latency once: its prompts are decoded as one batch), at the same ``serve_usd_per_hour``, per
  1,000 requests and per 1,000,000 generated tokens (``tokens_out``).
- training: the ``accelerator_hours`` recorded by the pretrain and finetune stages in their
  metrics.json (the devices each held for its wall ``seconds``: one GPU per rank, or one CPU
  machine; summed over every run of a resumed pretrain), priced at ``train_usd_per_hour`` per
  accelerator-hour. A stage whose metrics.json, seconds or accelerator-hours are missing is listed
  in ``stages_missing`` (with the reason in ``missing_reasons``) and the training totals are None:
  a total over part of training is never reported as the total. The known stages' own figures
  (``<stage>_seconds``, ``<stage>_accelerator_hours``, ``<stage>_usd``) stay visible.
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


def generation_cost(
    requests: int,
    generations: int,
    tokens_in: int,
    tokens_out: int,
    compute_seconds: float,
    usd_per_hour: float,
) -> dict[str, Any]:
    """Cost figures of one window's generations: ``compute_seconds`` of model time priced at
    ``usd_per_hour``; per 1,000 requests and per 1,000,000 generated tokens (None without any)."""
    usd = compute_seconds / SECONDS_PER_HOUR * usd_per_hour
    return {
        "requests": int(requests),
        "generations": int(generations),
        "tokens_in": int(tokens_in),
        "tokens_out": int(tokens_out),
        "compute_seconds": float(compute_seconds),
        "usd": usd,
        "usd_per_1k_requests": usd / requests * 1_000 if requests else None,
        "usd_per_1m_generated_tokens": usd / tokens_out * 1_000_000 if tokens_out else None,
        "usd_per_hour": float(usd_per_hour),
    }


def _number(metrics: Mapping[str, Any] | None, key: str) -> float | None:
    value = (metrics or {}).get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def stage_seconds(metrics: Mapping[str, Any] | None) -> float | None:
    """The wall seconds a stage recorded in its metrics.json, or None if it recorded none."""
    for key in ("seconds", "train_seconds"):
        value = _number(metrics, key)
        if value is not None:
            return value
    return None


def stage_accelerator_hours(metrics: Mapping[str, Any] | None) -> float | None:
    """The accelerator-hours a training stage recorded in its metrics.json, or None."""
    return _number(metrics, "accelerator_hours")


def _missing_reason(metrics: Mapping[str, Any] | None) -> str | None:
    if metrics is None:
        return "no metrics.json"
    if stage_seconds(metrics) is None:
        return "metrics.json has no seconds"
    if stage_accelerator_hours(metrics) is None:
        return "metrics.json has no accelerator_hours"
    return None


def training_cost(stages: Mapping[str, Mapping[str, Any] | None], usd_per_hour: float) -> dict[str, Any]:
    """The training cost from each training stage's metrics.json (``{stage: metrics}``, None when
    the stage has none), priced at ``usd_per_hour`` per accelerator-hour.

    ``{"<stage>_seconds", "<stage>_accelerator_hours", "<stage>_usd", ...}`` per stage (None when
    unknown), and the totals ``seconds``, ``accelerator_hours`` and ``usd``: None unless every
    stage is known (``stages_missing`` is then empty).
    """
    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for stage, metrics in stages.items():
        reason = _missing_reason(metrics)
        if reason is not None:
            reasons[stage] = reason
        hours = stage_accelerator_hours(metrics) if reason is None else None
        out[f"{stage}_seconds"] = stage_seconds(metrics)
        out[f"{stage}_accelerator_hours"] = hours
        out[f"{stage}_usd"] = None if hours is None else hours * usd_per_hour
    complete = not reasons
    hours_total = sum(out[f"{s}_accelerator_hours"] for s in stages) if complete else None
    out.update(
        seconds=sum(out[f"{s}_seconds"] for s in stages) if complete else None,
        accelerator_hours=hours_total,
        usd=None if hours_total is None else hours_total * usd_per_hour,
        usd_per_hour=float(usd_per_hour),
        stages_missing=sorted(reasons),
        missing_reasons=dict(sorted(reasons.items())),
    )
    return out
