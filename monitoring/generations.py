"""Monitoring generations (POST /generate): the prompts and outputs of a window against evaluate's
generations.jsonl (the fine-tuned model's outputs on the QA test questions).

Per generator version and window (``judge_generations``, called by ``monitoring.loop``):

- prompt drift (report ``generation_prompts``): the floor's drift report (``llm.drift.build_report``,
  the one the classifications use) over the prompt text (Evidently's TF-IDF domain classifier),
  its ``llm.text_features`` (length, word count, word length, non-letter share) and its OOV share
  (``monitoring.descriptors``), read by ``llm.drift.read_verdict``;
- output drift (report ``generation_outputs``): the same report over the output's features only:
  length, word count, word length, non-letter share, repeated word n-gram share
  (``llm.text_features.repeated_ngram_share``, n = ``monitoring.repetition_ngram``), empty (0/1)
  and OOV share. The output text itself is not a TF-IDF column: the answers are a few words, and
  a window of empty or one-word outputs leaves the classifier no terms ("After pruning, no terms
  remain"), so the test would fail exactly when outputs go wrong;
- outputs: share of empty outputs, mean repetition share, finish reasons; latency: ms per
  generated token (mean, p50/p95/p99, max) next to the reference's mean; time to first token;
- cost (``monitoring.cost.generation_cost``): the model time of each request (its ``latency_ms``,
  counted once per request: the prompts of one request are generated as one batch) priced at
  ``monitoring.prices.serve_usd_per_hour``, per 1,000 requests and per 1,000,000 generated tokens
  (``tokens_out``). With cross-request batching the figure is an upper bound (two requests served
  in one batch are both charged the batch's time);
- report ``generation_ops``: row count, ms per token quantiles, tokens, cost, empty share and
  repetition as Evidently metrics, for the workspace dashboard.

Drift and the output-share checks need ``monitor.min_rows`` generations; with fewer (or with no
reference file) the summary says they were skipped, and they cannot alert.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from components.common.io import read_jsonl
from components.common.seed import stable_hash
from llm.drift import DriftParams, _evidently, build_report, read_verdict, run_report, write_report
from llm.text_features import OUTPUT_FEATURE_COLUMNS, PROMPT_FEATURE_COLUMNS, generation_features
from monitoring.cost import generation_cost
from monitoring.descriptors import oov_share
from monitoring.settings import Settings

PROMPT, OUTPUT = "prompt", "output"
MS_PER_TOKEN = "ms_per_token"
PROMPT_OOV, OUTPUT_OOV = "prompt_oov_share", "output_oov_share"
# The columns of the two drift reports (stable names: metrics.json, reports, dashboards).
PROMPT_DRIFT_COLUMNS: tuple[str, ...] = (PROMPT, *PROMPT_FEATURE_COLUMNS, PROMPT_OOV)
OUTPUT_DRIFT_COLUMNS: tuple[str, ...] = (*OUTPUT_FEATURE_COLUMNS, OUTPUT_OOV)
# Per-row columns of the generation ops report. usd: the row's share of its request's cost;
# usd_per_1m_tokens: the window's cost per 1M generated tokens on every row (its mean is the figure).
GENERATION_OPS_COLUMNS: tuple[str, ...] = (
    MS_PER_TOKEN,
    "ttft_ms",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "output_empty",
    "output_repetition",
    "usd",
    "usd_per_1m_tokens",
)
QUANTILES = (0.5, 0.95, 0.99)
# Report folders / snapshot tags under <version>/.
TAG_PROMPTS, TAG_OUTPUTS, TAG_GENERATION_OPS = "generation_prompts", "generation_outputs", "generation_ops"
SKIPPED_NO_REFERENCE = "no_reference"
SKIPPED_TOO_FEW_ROWS = "too_few_rows"
NO_GENERATIONS = "no_generations"


@dataclass
class GenerationReference:
    """The reference generations (evaluate's generations.jsonl), sampled and described once."""

    path: str
    frame: Any  # generation_frame columns
    ms_per_token: list[float]


_CACHE: dict[tuple, GenerationReference] = {}


def generation_frame(prompts: Sequence[str], outputs: Sequence[str], ngram: int):
    """DataFrame: the prompt text, the prompt and output features (``llm.text_features``) and OOV shares."""
    import pandas as pd

    frame = pd.DataFrame(
        [generation_features(p, o, ngram) for p, o in zip(prompts, outputs, strict=True)],
        columns=[*PROMPT_FEATURE_COLUMNS, *OUTPUT_FEATURE_COLUMNS],
    )
    frame.insert(0, PROMPT, list(prompts))
    frame[PROMPT_OOV] = [oov_share(p) for p in prompts]
    frame[OUTPUT_OOV] = [oov_share(o) for o in outputs]
    return frame


def sample(keys: Sequence[str], max_rows: int, seed: int) -> list[int]:
    """Indices of at most ``max_rows`` rows chosen by a seeded hash of their key, in input order."""
    if len(keys) <= max_rows:
        return list(range(len(keys)))
    ranked = sorted(range(len(keys)), key=lambda i: (stable_hash(keys[i], seed), i))
    return sorted(ranked[:max_rows])


def load_generation_reference(
    path: str | os.PathLike | None, params: DriftParams, ngram: int
) -> GenerationReference | None:
    """Read, sample (``max_rows``, seeded by id) and describe generations.jsonl ({id, prompt, output,
    tokens_in, tokens_out, ms_per_token, finish_reason}); None when ``path`` is not given or absent
    (a release without a generator). Cached per process by path, size and mtime."""
    if not path or not os.path.exists(path):
        return None
    path = str(path)
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns, params.max_rows, params.seed, ngram)
    if key in _CACHE:
        return _CACHE[key]
    records = [r for r in read_jsonl(path) if isinstance(r.get(PROMPT), str) and r[PROMPT].strip()]
    if records and not all(isinstance(r.get(OUTPUT), str) for r in records):
        raise ValueError(f"generation reference {path}: every record needs an {OUTPUT!r} text")
    keep = sample([str(r.get("id", r[PROMPT])) for r in records], params.max_rows, params.seed)
    records = [records[i] for i in keep]
    frame = generation_frame([r[PROMPT] for r in records], [r[OUTPUT] for r in records], ngram)
    ms = [float(r[MS_PER_TOKEN]) for r in records if isinstance(r.get(MS_PER_TOKEN), int | float)]
    reference = GenerationReference(path, frame, ms)
    _CACHE.clear()
    _CACHE[key] = reference
    return reference


def quantile_summary(values: Sequence[float], unit: str = "ms") -> dict[str, Any]:
    """Mean, p50/p95/p99 (linear interpolation) and max; None when empty."""
    import numpy as np

    keys = ("mean", "p50", "p95", "p99", "max")
    if len(values) == 0:
        return {f"{k}_{unit}": None for k in keys}
    array = np.asarray(values, dtype=float)
    p50, p95, p99 = np.quantile(array, QUANTILES)
    return dict(
        zip(
            (f"{k}_{unit}" for k in keys),
            (float(array.mean()), float(p50), float(p95), float(p99), float(array.max())),
            strict=True,
        )
    )


def request_seconds(rows: Any) -> Any:
    """Model seconds per request: the request's ``latency_ms`` (the largest of its rows), once."""
    return rows.groupby("request_id", sort=False)["latency_ms"].max() / 1000.0


def ops_frame(rows: Any, features: Any, usd_per_hour: float, usd_per_1m_tokens: float | None) -> Any:
    """The per-row columns of the generation ops report (``GENERATION_OPS_COLUMNS``)."""
    frame = rows[[MS_PER_TOKEN, "ttft_ms", "latency_ms", "tokens_in", "tokens_out"]].astype(float)
    frame = frame.reset_index(drop=True)
    frame["output_empty"] = features["output_empty"].to_numpy()
    frame["output_repetition"] = features["output_repetition"].to_numpy()
    per_request = request_seconds(rows)
    counts = rows.groupby("request_id", sort=False)["request_id"].transform("size").to_numpy()
    seconds = rows["request_id"].map(per_request).to_numpy() / counts
    frame["usd"] = seconds / 3600.0 * usd_per_hour
    frame["usd_per_1m_tokens"] = float("nan") if usd_per_1m_tokens is None else usd_per_1m_tokens
    return frame[list(GENERATION_OPS_COLUMNS)]


def run_ops_report(current: Any, timestamp=None, tags=(), metadata=None):
    """Row count, ms-per-token quantiles, token and cost sums, empty share and repetition of a
    window's generations (``ops_frame``): what the generator's dashboard plots over time."""
    evidently = _evidently()
    from evidently.metrics import RowCount

    from monitoring.figures import MEAN, SUM, Figures

    # Each group as one widget with at most one histogram (monitoring.figures), not one per statistic.
    latency = [("mean", MEAN, MS_PER_TOKEN)] + [
        (f"p{round(q * 100)}", str(q), MS_PER_TOKEN) for q in QUANTILES
    ]
    outputs = [
        ("tokens in", SUM, "tokens_in"),
        ("tokens out", SUM, "tokens_out"),
        ("share empty", MEAN, "output_empty"),
        ("mean repeated n-gram share", MEAN, "output_repetition"),
    ]
    cost = [("USD in the window", SUM, "usd"), ("USD per 1M generated tokens", MEAN, "usd_per_1m_tokens")]
    metrics: list[Any] = [
        RowCount(),
        Figures(title="Latency per generated token (ms)", figures=latency, histogram=MS_PER_TOKEN),
        Figures(title="Generated outputs", figures=outputs),
        Figures(title="Cost", figures=cost),
    ]
    definition = evidently.DataDefinition(numerical_columns=list(GENERATION_OPS_COLUMNS))
    return evidently.Report(metrics).run(
        current_data=evidently.Dataset.from_pandas(current, data_definition=definition),
        reference_data=None,
        timestamp=timestamp,
        tags=list(tags),
        metadata=dict(metadata or {}),
    )


def drift_reports(
    reference: Any, current: Any, params: DriftParams, timestamp=None, metadata=None
) -> dict[str, Any]:
    """``{tag: snapshot}``: the floor's drift report over the prompt columns and over the output columns."""
    prompt_numbers = [c for c in PROMPT_DRIFT_COLUMNS if c != PROMPT]
    out = {}
    for tag, columns, text, numbers in (
        (TAG_PROMPTS, PROMPT_DRIFT_COLUMNS, (PROMPT,), prompt_numbers),
        (TAG_OUTPUTS, OUTPUT_DRIFT_COLUMNS, (), list(OUTPUT_DRIFT_COLUMNS)),
    ):
        keep = [*text, *numbers]
        out[tag] = run_report(
            build_report(params, columns=columns),
            reference[keep],
            current[keep],
            numerical=numbers,
            text=text,
            timestamp=timestamp,
            tags=[tag],
            metadata=metadata,
        )
    return out


def _verdict(report: Mapping[str, Any], params: DriftParams, columns: Sequence[str]) -> dict[str, Any]:
    verdict = read_verdict(report, params.drift_share, columns=columns)
    return {
        "drift_detected": verdict.drift_detected,
        "drift_share": verdict.drift_share,
        "drift_share_threshold": params.drift_share,
        "drifted_columns": verdict.drifted_columns,
        "columns": verdict.columns,
        "scores": verdict.scores,
    }


def judge_generations(
    version: str,
    rows: Any,
    reference: GenerationReference | None,
    drift_params: DriftParams,
    settings: Settings,
    out: Path,
    window: Mapping[str, Any],
    end: datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Summary and Evidently snapshots ({tag: snapshot}) of one generator version's window rows
    (the generations log's columns); reports are written under ``out/<version>/<tag>/``."""
    meta = {"model_version": version, "window_start": window["start"], "window_end": window["end"]}
    features = generation_frame(rows[PROMPT].tolist(), rows[OUTPUT].tolist(), settings.repetition_ngram)
    requests = int(rows["request_id"].nunique())
    tokens_out = int(rows["tokens_out"].sum())
    cost = generation_cost(
        requests=requests,
        generations=len(rows),
        tokens_in=int(rows["tokens_in"].sum()),
        tokens_out=tokens_out,
        compute_seconds=float(request_seconds(rows).sum()),
        usd_per_hour=settings.prices.serve_usd_per_hour,
    )
    enough = len(rows) >= drift_params.min_rows
    outputs: dict[str, Any] = {
        "empty": int(features["output_empty"].sum()),
        "empty_share": float(features["output_empty"].mean()),
        "repetition_mean": float(features["output_repetition"].mean()),
        "repetition_ngram": settings.repetition_ngram,
        "mean_chars": float(features["output_char_length"].mean()),
        "finish_reasons": {str(k): int(v) for k, v in sorted(rows["finish_reason"].value_counts().items())},
    }
    if not enough:
        outputs["skipped"] = SKIPPED_TOO_FEW_ROWS
    latency = quantile_summary(rows[MS_PER_TOKEN].dropna().tolist())
    latency["reference_mean_ms"] = (
        sum(reference.ms_per_token) / len(reference.ms_per_token)
        if reference and reference.ms_per_token
        else None
    )
    latency["ttft_p95_ms"] = quantile_summary(rows["ttft_ms"].dropna().tolist())["p95_ms"]
    summary: dict[str, Any] = {
        "model_version": version,
        "rows": len(rows),
        "requests": requests,
        "tokens_in": int(rows["tokens_in"].sum()),
        "tokens_out": tokens_out,
        "prompt_mean_chars": float(features["prompt_char_length"].mean()),
        "outputs": outputs,
        "ms_per_token": latency,
        "cost": cost,
    }
    snapshots: dict[str, Any] = {}
    if reference is None:
        summary["drift"] = {"drift_detected": None, "skipped": SKIPPED_NO_REFERENCE}
    elif not enough or len(reference.frame) < drift_params.min_rows:
        summary["drift"] = {"drift_detected": None, "skipped": SKIPPED_TOO_FEW_ROWS}
    else:
        keys = (rows["request_id"] + ":" + rows["item"].astype(str)).tolist()
        keep = sample(keys, drift_params.max_rows, drift_params.seed)
        current = features.iloc[keep].reset_index(drop=True)
        reports = drift_reports(reference.frame, current, drift_params, timestamp=end, metadata=meta)
        drift: dict[str, Any] = {"rows": len(current)}
        for tag, columns, name in (
            (TAG_PROMPTS, PROMPT_DRIFT_COLUMNS, "prompts"),
            (TAG_OUTPUTS, OUTPUT_DRIFT_COLUMNS, "outputs"),
        ):
            report = write_report(reports[tag], out / version / tag)
            drift[name] = _verdict(report, drift_params, columns)
        drift["drift_detected"] = drift["prompts"]["drift_detected"] or drift["outputs"]["drift_detected"]
        summary["drift"] = drift
        snapshots.update(reports)
    ops = ops_frame(rows, features, settings.prices.serve_usd_per_hour, cost["usd_per_1m_generated_tokens"])
    snapshot = run_ops_report(ops, timestamp=end, tags=[TAG_GENERATION_OPS], metadata=meta)
    write_report(snapshot, out / version / TAG_GENERATION_OPS)
    snapshots[TAG_GENERATION_OPS] = snapshot
    return summary, snapshots


def no_generations() -> dict[str, Any]:
    """The generations part of a run summary when the window holds none."""
    return {
        "rows": 0,
        "requests": 0,
        "versions": {},
        "skipped": NO_GENERATIONS,
        "message": "no generations in this window (a release without a generator, or no /generate traffic)",
    }
