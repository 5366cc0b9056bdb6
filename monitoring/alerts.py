"""Alerts: the checks of a monitor run against ``monitoring.alerts``, the alert JSON, a webhook.

``check_alerts(summary, thresholds)`` reads one model version's run summary (monitoring.loop)
and returns an ``Alert`` per crossed threshold, in a fixed order. A check that had too little
data (fewer than ``monitor.min_rows`` predictions, ``min_labels`` labels, no previous window) is
not an alert: the summary says it was skipped. The CLI exits ``EXIT_ALERT`` when any alert fired,
writes every alert to ``alerts.json``, and POSTs the same JSON to a webhook when one is given
(a failed POST is logged; it never hides the alert: the file and the exit code still say it).
The Kubeflow component fails its task instead (``raise_on_alert``), so the run shows red.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("monitoring.alerts")

EXIT_ALERT = 1  # the monitor's exit status when an alert fired (2 is a bad params file)

# Stable alert kinds (they appear in alerts.json and in webhook payloads).
DATA_DRIFT = "data_drift"
PREDICTION_DRIFT = "prediction_drift"
QUALITY = "quality"
LATENCY = "latency"
LATENCY_DRIFT = "latency_drift"
COST = "cost"
GENERATION_DRIFT = "generation_drift"
GENERATION_EMPTY = "generation_empty"
GENERATION_REPETITION = "generation_repetition"
GENERATION_LATENCY = "generation_latency"
GENERATION_COST = "generation_cost"


@dataclasses.dataclass(frozen=True)
class Alert:
    kind: str  # one of the kinds above
    model_version: str
    value: float  # the measured figure
    threshold: float  # the params threshold it crossed
    message: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_alerts(summary: Mapping[str, Any], thresholds: Any) -> list[Alert]:
    """Alerts for one model version's summary; ``thresholds`` is a ``monitoring.alerts`` object
    (``monitoring.settings.Alerts``)."""
    version = str(summary.get("model_version", ""))
    alerts: list[Alert] = []
    drift = summary.get("drift") or {}
    if thresholds.data_drift and drift.get("drift_detected"):
        alerts.append(
            Alert(
                DATA_DRIFT,
                version,
                drift["drift_share"],
                drift["drift_share_threshold"],
                f"text drift: {drift['drifted_columns']}/{drift['columns']} text columns drifted "
                f"(share {drift['drift_share']:.2f} >= {drift['drift_share_threshold']:.2f})",
            )
        )
    prediction = summary.get("prediction_drift") or {}
    if thresholds.prediction_drift and prediction.get("drift_detected"):
        alerts.append(
            Alert(
                PREDICTION_DRIFT,
                version,
                prediction["score"],
                prediction["threshold"],
                f"prediction drift: {prediction['method']} {prediction['score']:.3f} >= {prediction['threshold']:.3f}",
            )
        )
    quality = summary.get("quality") or {}
    accuracy = quality.get("accuracy")
    if accuracy is not None and accuracy < thresholds.min_accuracy:
        alerts.append(
            Alert(
                QUALITY,
                version,
                accuracy,
                thresholds.min_accuracy,
                f"quality: accuracy {accuracy:.3f} on {quality['labelled']} labelled predictions "
                f"< {thresholds.min_accuracy:.3f}",
            )
        )
    latency = summary.get("latency") or {}
    p95 = latency.get("p95_ms")
    if p95 is not None and p95 > thresholds.max_latency_p95_ms:
        alerts.append(
            Alert(
                LATENCY,
                version,
                p95,
                thresholds.max_latency_p95_ms,
                f"latency: p95 {p95:.1f} ms > {thresholds.max_latency_p95_ms:.1f} ms",
            )
        )
    latency_drift = latency.get("drift") or {}
    if thresholds.latency_drift and latency_drift.get("drift_detected"):
        alerts.append(
            Alert(
                LATENCY_DRIFT,
                version,
                latency_drift["score"],
                latency_drift["threshold"],
                f"latency drift against the previous window: {latency_drift['method']} "
                f"{latency_drift['score']:.3f} >= {latency_drift['threshold']:.3f}",
            )
        )
    cost = summary.get("cost") or {}
    per_1k = cost.get("usd_per_1k_requests")
    if per_1k is not None and per_1k > thresholds.max_usd_per_1k_requests:
        alerts.append(
            Alert(
                COST,
                version,
                per_1k,
                thresholds.max_usd_per_1k_requests,
                f"cost: ${per_1k:.4f} per 1k requests > ${thresholds.max_usd_per_1k_requests:.4f}",
            )
        )
    return alerts


def check_generation_alerts(summary: Mapping[str, Any], thresholds: Any) -> list[Alert]:
    """Alerts for one generator version's generation summary (``monitoring.generations``), against
    the generation keys of ``monitoring.alerts``. Drift and the output shares are judged only when
    the window had ``monitor.min_rows`` generations (and a reference): otherwise they are skipped."""
    version = str(summary.get("model_version", ""))
    alerts: list[Alert] = []
    drift = summary.get("drift") or {}
    if thresholds.generation_drift and drift.get("drift_detected"):
        sides = [side for side in ("prompts", "outputs") if drift[side]["drift_detected"]]
        worst = max((drift[side] for side in sides), key=lambda d: d["drift_share"])
        alerts.append(
            Alert(
                GENERATION_DRIFT,
                version,
                worst["drift_share"],
                worst["drift_share_threshold"],
                "generation drift: "
                + ", ".join(
                    f"{side} {drift[side]['drifted_columns']}/{drift[side]['columns']} columns drifted"
                    for side in sides
                )
                + f" (share >= {worst['drift_share_threshold']:.2f})",
            )
        )
    outputs = summary.get("outputs") or {}
    if "skipped" not in outputs and outputs:
        empty = outputs["empty_share"]
        if empty > thresholds.max_empty_output_share:
            alerts.append(
                Alert(
                    GENERATION_EMPTY,
                    version,
                    empty,
                    thresholds.max_empty_output_share,
                    f"empty outputs: {outputs['empty']} of {summary['rows']} generations "
                    f"(share {empty:.2f} > {thresholds.max_empty_output_share:.2f})",
                )
            )
        repetition = outputs["repetition_mean"]
        if repetition > thresholds.max_output_repetition:
            alerts.append(
                Alert(
                    GENERATION_REPETITION,
                    version,
                    repetition,
                    thresholds.max_output_repetition,
                    f"repetitive outputs: mean repeated {outputs['repetition_ngram']}-gram share "
                    f"{repetition:.2f} > {thresholds.max_output_repetition:.2f}",
                )
            )
    p95 = (summary.get("ms_per_token") or {}).get("p95_ms")
    if p95 is not None and p95 > thresholds.max_ms_per_token_p95:
        alerts.append(
            Alert(
                GENERATION_LATENCY,
                version,
                p95,
                thresholds.max_ms_per_token_p95,
                f"generation latency: p95 {p95:.1f} ms per token > {thresholds.max_ms_per_token_p95:.1f} ms",
            )
        )
    per_1m = (summary.get("cost") or {}).get("usd_per_1m_generated_tokens")
    if per_1m is not None and per_1m > thresholds.max_usd_per_1m_generated_tokens:
        alerts.append(
            Alert(
                GENERATION_COST,
                version,
                per_1m,
                thresholds.max_usd_per_1m_generated_tokens,
                f"generation cost: ${per_1m:.4f} per 1M generated tokens "
                f"> ${thresholds.max_usd_per_1m_generated_tokens:.4f}",
            )
        )
    return alerts


def alert_payload(alerts: list[Alert], window: Mapping[str, Any]) -> dict[str, Any]:
    """The alert JSON: ``{"alerting": bool, "count": n, "window": {...}, "alerts": [...]}``."""
    return {
        "alerting": bool(alerts),
        "count": len(alerts),
        "window": dict(window),
        "alerts": [a.to_dict() for a in alerts],
    }


class MonitoringAlert(RuntimeError):
    """A monitor run that alerted, raised where a failed task is the signal (Kubeflow)."""


def raise_on_alert(alerts_json: str | os.PathLike | Mapping[str, Any]) -> None:
    """Raise ``MonitoringAlert`` ("monitoring alerts: <message>; <message> ...") when the alert
    JSON (a path to alerts.json, or its dict) is alerting; return quietly otherwise."""
    if isinstance(alerts_json, Mapping):
        payload = alerts_json
    else:
        with open(alerts_json, encoding="utf-8") as f:
            payload = json.load(f)
    if payload["alerting"]:
        raise MonitoringAlert("monitoring alerts: " + "; ".join(a["message"] for a in payload["alerts"]))


def post_webhook(url: str, payload: Mapping[str, Any], timeout_s: float = 10.0) -> bool:
    """POST ``payload`` as JSON to ``url``; True on a 2xx answer. Never raises: a monitor whose
    webhook is down must still write its alert file and exit non-zero."""
    data = json.dumps(payload, sort_keys=True).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.error("alert webhook %s failed: %s", url, exc)
        return False
    if not ok:
        log.error("alert webhook %s answered %s", url, response.status)
    return ok
