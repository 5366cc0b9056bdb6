"""Params of the monitor stage (stdlib only: imported by the params loader of every stage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from components.common.params import check_fraction, check_positive

SECTION = "monitor"

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

# Tests for the categorical prediction column (label distribution).
CatMethod = Literal[
    "jensenshannon", "psi", "chisquare", "z", "kl_div", "TVD", "hellinger", "fisher_exact", "g_test"
]


@dataclass(frozen=True)
class Alerts:
    """When a continuous-monitor run alerts (``monitor.alerts``). Each check needs enough rows:
    drift and latency need ``min_rows`` predictions in the window, quality ``min_labels`` labels."""

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

    def __post_init__(self) -> None:
        check_fraction(f"{SECTION}.alerts", min_accuracy=self.min_accuracy)
        check_positive(
            f"{SECTION}.alerts",
            min_labels=self.min_labels,
            max_latency_p95_ms=self.max_latency_p95_ms,
            max_usd_per_1k_requests=self.max_usd_per_1k_requests,
        )


@dataclass(frozen=True)
class Prices:
    """Unit prices for the cost figures (``monitor.prices``)."""

    serve_usd_per_hour: float = 0.10  # price of one hour of model compute while serving (USD per hour)
    train_usd_per_hour: float = 0.10  # price of one hour of the training machine (USD per hour)

    def __post_init__(self) -> None:
        for key in ("serve_usd_per_hour", "train_usd_per_hour"):
            if getattr(self, key) < 0:
                raise ValueError(f"{SECTION}.prices.{key}: must be >= 0, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class Params:
    """The ``monitor`` section of params.yaml. Defaults are tuned on the Rotten Tomatoes sample.

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
    # The continuous monitor (python -m monitoring) over the server's prediction log:
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
    alerts: Alerts = field(default_factory=Alerts)  # alert thresholds (see Alerts)
    prices: Prices = field(default_factory=Prices)  # unit prices for cost (see Prices)

    def __post_init__(self) -> None:
        check_positive(
            SECTION,
            text_threshold=self.text_threshold,
            num_threshold=self.num_threshold,
            drift_share=self.drift_share,
            max_rows=self.max_rows,
            min_rows=self.min_rows,
            window_minutes=self.window_minutes,
            prediction_threshold=self.prediction_threshold,
            latency_threshold=self.latency_threshold,
        )
        check_fraction(SECTION, text_threshold=self.text_threshold, drift_share=self.drift_share)
        if len(self.schedule_cron.split()) != 6:
            raise ValueError(
                f"{SECTION}.schedule_cron: need 6 cron fields (seconds first, as Kubeflow), got {self.schedule_cron!r}"
            )
        if self.min_rows > self.max_rows:
            raise ValueError(
                f"{SECTION}.min_rows: must be <= max_rows ({self.max_rows}), got {self.min_rows!r}"
            )
