"""Settings of the continuous monitor: the ``monitoring`` section of params.yaml. Import-light (stdlib,
the floor's drift types and the params checks): the params loader of every stage imports it.

The drift thresholds are not here: the continuous monitor judges drift with the ``monitor``
section (``llm.drift.DriftParams``), the same values as the DAG's monitor stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from components.common.params import check_fraction, check_positive
from llm.drift import NumMethod

SECTION = "monitoring"

# Evidently's tests for the categorical prediction column (label distribution).
CatMethod = Literal[
    "jensenshannon", "psi", "chisquare", "z", "kl_div", "TVD", "hellinger", "fisher_exact", "g_test"
]


@dataclass(frozen=True)
class Alerts:
    """When a continuous-monitor run alerts (``monitoring.alerts``). Each check needs enough rows:
    drift and latency need ``monitor.min_rows`` predictions in the window, quality ``min_labels`` labels."""

    data_drift: bool = (
        True  # alert when the window's texts drift (share of drifted text columns >= drift_share) (flag)
    )
    prediction_drift: bool = (
        True  # alert when the predicted-label distribution drifts (prediction_method/threshold) (flag)
    )
    min_accuracy: float = 0.6  # alert when accuracy on labelled predictions is below this (0-1)
    min_labels: int = 30  # fewest labelled predictions in the window to judge quality (rows)
    max_latency_p95_ms: float = 2000.0  # alert when the window's p95 server latency is above this (ms)
    latency_drift: bool = False  # also alert when latency drifts against the previous window (flag)
    max_usd_per_1k_requests: float = 0.05  # alert when serving cost per 1k requests is above this (USD)
    # Generations (POST /generate), judged against evaluate's generations.jsonl:
    generation_drift: bool = True  # alert when the window's prompts or outputs drift (share of drifted columns >= drift_share) (flag)
    max_empty_output_share: float = 0.2  # alert when a larger share of the window's outputs is empty (0-1)
    max_output_repetition: float = (
        0.2  # alert when the mean share of repeated word n-grams in outputs is above this (0-1)
    )
    max_ms_per_token_p95: float = (
        500.0  # alert when the window's p95 decoding time per generated token is above this (ms)
    )
    max_usd_per_1m_generated_tokens: float = (
        5.0  # alert when the window's cost per 1M generated tokens is above this (USD)
    )

    def __post_init__(self) -> None:
        check_fraction(
            f"{SECTION}.alerts",
            min_accuracy=self.min_accuracy,
            max_empty_output_share=self.max_empty_output_share,
            max_output_repetition=self.max_output_repetition,
        )
        check_positive(
            f"{SECTION}.alerts",
            min_labels=self.min_labels,
            max_latency_p95_ms=self.max_latency_p95_ms,
            max_usd_per_1k_requests=self.max_usd_per_1k_requests,
            max_ms_per_token_p95=self.max_ms_per_token_p95,
            max_usd_per_1m_generated_tokens=self.max_usd_per_1m_generated_tokens,
        )


@dataclass(frozen=True)
class Prices:
    """Unit prices for the cost figures (``monitoring.prices``): the one place prices live. The
    training stages record time only (``seconds``, ``accelerator_hours``); ``monitoring.cost`` turns
    it into USD with these."""

    serve_usd_per_hour: float = 0.10  # price of one hour of model compute while serving (USD per hour)
    train_usd_per_hour: float = 0.10  # price of one accelerator-hour of training: one GPU, or one CPU machine; on-peak when a training_window is set (USD per hour)
    train_off_peak_usd_per_hour: float = 0.06  # the same inside monitoring.training_window (spot / night rate); unused while it is off (USD per hour)

    def __post_init__(self) -> None:
        for key in ("serve_usd_per_hour", "train_usd_per_hour", "train_off_peak_usd_per_hour"):
            if getattr(self, key) < 0:
                raise ValueError(f"{SECTION}.prices.{key}: must be >= 0, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class TrainingWindow:
    """When the training runs the line starts may run (``monitoring.training_window``): the
    monitor's retraining on an alert and ``make kfp-submit``. ``llm.costs`` holds the rules."""

    enabled: bool = False  # confine training runs to the off-peak window below (flag)
    time_zone: str = "UTC"  # IANA time zone of start and end, e.g. Europe/Berlin (name)
    start: str = "22:00"  # the off-peak window opens, local time (HH:MM)
    end: str = "06:00"  # it closes; earlier than start = it crosses midnight (HH:MM)
    outside: Literal["refuse", "wait"] = (
        "refuse"  # a run started outside it: refused, or it waits for the opening; --force starts it anyway (name)
    )
    max_wait_hours: float = 24.0  # with outside: wait, the longest wait before the run is refused (hours)

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from llm.costs import parse_hhmm

        section = f"{SECTION}.training_window"
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{section}.time_zone: unknown time zone {self.time_zone!r} (IANA name, e.g. Europe/Berlin)"
            ) from None
        for key in ("start", "end"):
            try:
                parse_hhmm(getattr(self, key))
            except ValueError as exc:
                raise ValueError(f"{section}.{key}: {exc}") from None
        if self.start == self.end:
            raise ValueError(
                f"{section}.end: equal to start ({self.start}); the window would be empty or the whole day"
            )
        check_positive(section, max_wait_hours=self.max_wait_hours)


# The alert kinds (monitoring.alerts) a retraining may be started by.
RETRAIN_KINDS = (
    "data_drift",
    "prediction_drift",
    "quality",
    "latency",
    "latency_drift",
    "cost",
    "generation_drift",
    "generation_empty",
    "generation_repetition",
    "generation_latency",
    "generation_cost",
)


@dataclass(frozen=True)
class Retrain:
    """What an alert does with ``--on-alert retrain`` (``monitoring.retrain``, monitoring.retrain):
    which alerts start a retraining on the new data version, and how much new data it needs."""

    on_alerts: list[str] = field(
        default_factory=lambda: ["data_drift", "prediction_drift", "quality"]
    )  # alert kinds that start a retraining (names: monitoring.alerts kinds)
    min_new_examples: int = 30  # fewest harvested labelled predictions not yet in the trained data version; fewer: no retraining, the reason recorded (examples)
    experiment: str = "llm-production-line"  # Kubeflow experiment of the retraining runs (name)

    def __post_init__(self) -> None:
        unknown = [k for k in self.on_alerts if k not in RETRAIN_KINDS]
        if unknown:
            raise ValueError(
                f"{SECTION}.retrain.on_alerts: unknown alert kind {unknown[0]!r} (kinds: {', '.join(RETRAIN_KINDS)})"
            )
        check_positive(f"{SECTION}.retrain", min_new_examples=self.min_new_examples)


@dataclass(frozen=True)
class Settings:
    """The ``monitoring`` section of params.yaml: the window, schedule, prediction and latency
    tests, alert thresholds and prices of ``python -m monitoring`` and its recurring run."""

    window_minutes: int = (
        60  # length of the prediction-log window each run judges, ending at the run time (minutes)
    )
    schedule_cron: str = "0 0 * * * *"  # Kubeflow recurring-run cron (6 fields, seconds first): hourly (cron)
    prediction_method: CatMethod = (
        "jensenshannon"  # Evidently test for the predicted-label distribution (name)
    )
    prediction_threshold: float = 0.1  # jensenshannon: distance at which predictions drifted (0-1)
    latency_method: NumMethod = "wasserstein"  # Evidently test for latency against the previous window (name)
    latency_threshold: float = (
        0.5  # wasserstein: distance in previous-window std units at which latency drifted
    )
    repetition_ngram: int = 2  # word n-gram size of the repetition share of generated outputs (words)
    alerts: Alerts = field(default_factory=Alerts)  # alert thresholds (see Alerts)
    prices: Prices = field(default_factory=Prices)  # unit prices for cost (see Prices)
    training_window: TrainingWindow = field(
        default_factory=TrainingWindow
    )  # off-peak training (see TrainingWindow)
    retrain: Retrain = field(default_factory=Retrain)  # retraining on an alert (see Retrain)

    def __post_init__(self) -> None:
        check_positive(
            SECTION,
            window_minutes=self.window_minutes,
            prediction_threshold=self.prediction_threshold,
            latency_threshold=self.latency_threshold,
            repetition_ngram=self.repetition_ngram,
        )
        if len(self.schedule_cron.split()) != 6:
            raise ValueError(
                f"{SECTION}.schedule_cron: need 6 cron fields (seconds first, as Kubeflow), got {self.schedule_cron!r}"
            )
