"""The continuous monitor: judge one time window of the prediction log; or do so on an interval.

Two params objects come in: ``drift_params``, the drift thresholds and sampling of the ``monitor``
section (``llm.drift.DriftParams``, the same values the DAG's monitor stage judges with), and
``settings``, the ``monitoring`` section (``monitoring.settings.Settings``: window, prediction and
latency tests, alerts, prices).

``monitor_window(log_uri, reference, output, drift_params, settings, end=...)`` reads the
predictions stamped in ``[end - window_minutes, end)`` (monitoring.window) with the labels that
arrived for them, and for each model version found there:

- drift: a seeded sample of at most ``max_rows`` predictions (by hash of request id and item, so
  the sample does not depend on file order) against the reference (evaluate's predictions.jsonl:
  the test split the model was judged on) — text drift over the text and its descriptors,
  prediction drift, score drift (monitoring.reports ``drift``); skipped below ``min_rows``;
- quality: accuracy and macro-F1 on the predictions whose labels arrived (at least
  ``alerts.min_labels``), with Evidently's classification report;
- latency: mean, p50/p95/p99 and max over every row, and drift against the previous window of the
  same length (when it has ``min_rows`` rows of the same version);
- cost: requests, tokens, compute-seconds and USD (monitoring.cost, ``monitoring.prices``), next
  to the training cost priced from pretrain's and finetune's metrics.json (their seconds and
  accelerator-hours); with either stage's figures missing, the training totals are None and
  ``training_cost.stages_missing`` names the stage;
- alerts against ``monitoring.alerts`` (monitoring.alerts).

The generations of the window (the log's ``generations`` kind, POST /generate) are judged per
generator version against evaluate's generations.jsonl (``generations_reference``) by
``monitoring.generations``: prompt and output drift, empty and repetitive outputs, ms per generated
token, cost per 1M generated tokens; their alerts (``generation_*``) join the run's. A window
without generations (a release without a generator, or no traffic) says so in
``generations.skipped`` and raises no generation alert.

Output folder (written atomically, like every stage's)::

    <version>/drift/report.{html,json}    <version>/ops/report.{html,json}
    <version>/quality/report.{html,json}  (when labels arrived, binary models)
    <generator version>/generation_{prompts,outputs,ops}/report.{html,json}  (when generations came)
    metrics.json   the run summary (below)      alerts.json   monitoring.alerts.alert_payload
    report.html    every report above on one page (added by ``run_scheduled`` once the folder is in place)

With a workspace, every report is also added as a snapshot to the version's project
(monitoring.workspace). Counts, latency and cost use every row of the window; only the drift
tests use the sample.

``run_scheduled`` is the one entry of a run, for ``python -m monitoring`` and the Kubeflow
component alike: it chooses the window end, runs ``run_once`` into ``output/<window end>/`` and
adds ``report.html``, every report of the run on one page (the KFP UI's HTML viewer).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from components.common import artifacts
from components.common.io import atomic_output_dir, read_json, read_jsonl, write_json
from components.common.seed import stable_hash
from llm.drift import DriftParams, write_report
from monitoring.alerts import Alert, alert_payload, check_alerts, check_generation_alerts
from monitoring.cost import serving_cost, training_cost
from monitoring.generations import judge_generations, load_generation_reference, no_generations
from monitoring.reports import (
    LABEL,
    LATENCY,
    OPS_COLUMNS,
    PREDICTION,
    SCORE,
    combined_html,
    read_drift,
    read_latency_drift,
    run_drift_report,
    run_ops_report,
    run_pages,
    run_quality_report,
    text_frame,
)
from monitoring.roi import TAG_ROI, read_release, roi_report, version_roi
from monitoring.settings import Settings
from monitoring.window import (
    parse_time,
    read_generations,
    read_window,
    read_window_with_labels,
    window_bounds,
)

log = logging.getLogger("monitoring")

ALERTS_FILE = "alerts.json"
METRICS_FILE = "metrics.json"
REPORT_HTML = "report.html"  # a run's reports on one page (run_scheduled)
# The summary figures a Kubeflow run shows as metrics (their numeric leaves).
HEADLINE_KEYS = ("rows", "requests", "alerts", "versions", "training_cost", "generation_rows", "release_roi")
# The stages whose time is the training cost; one missing is reported, never priced at 0.
TRAINING_STAGES = ("pretrain", "finetune")
SKIPPED_TOO_FEW_ROWS = "too_few_rows"
SKIPPED_TOO_FEW_LABELS = "too_few_labels"
SKIPPED_NO_PREVIOUS = "no_previous_window"


@dataclass
class Reference:
    """The reference rows (evaluation predictions), sampled and described once per process."""

    path: str
    frame: Any  # text_frame columns + label
    labels: list[str]  # label names seen in the reference (sorted)


_REFERENCE_CACHE: dict[tuple, Reference] = {}


def significant(value: Any, digits: int = 6) -> Any:
    """Floats rounded to ``digits`` significant digits (costs are tiny numbers: rounding to decimal
    places would zero them), NaN/inf as None, through dicts and lists."""
    import math

    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.{digits}g}")
    if isinstance(value, Mapping):
        return {str(k): significant(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [significant(v, digits) for v in value]
    return value


def sample_index(keys: Sequence[str], max_rows: int, seed: int) -> list[int]:
    """Indices of at most ``max_rows`` rows chosen by a seeded hash of their key, in input order."""
    if len(keys) <= max_rows:
        return list(range(len(keys)))
    ranked = sorted(range(len(keys)), key=lambda i: (stable_hash(keys[i], seed), i))
    return sorted(ranked[:max_rows])


def load_reference(path: str | os.PathLike, params: DriftParams) -> Reference:
    """Read, sample (``max_rows``, seeded by id) and describe the reference JSONL
    ({id, text, prediction, score[, label]}); cached per process by path, size and mtime."""
    path = str(path)
    stat = os.stat(path) if os.path.exists(path) else None
    key = (
        path,
        stat.st_size if stat else None,
        stat.st_mtime_ns if stat else None,
        params.max_rows,
        params.seed,
    )
    if key in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[key]
    records = [r for r in read_jsonl(path) if isinstance(r.get("text"), str) and r["text"].strip()]
    missing = [c for c in (PREDICTION, SCORE) if records and c not in records[0]]
    if missing:
        raise ValueError(
            f"reference {path}: records need {PREDICTION!r} and {SCORE!r} (evaluate's predictions.jsonl)"
        )
    if len(records) < params.min_rows:
        raise ValueError(f"reference {path}: {len(records)} texts, need at least {params.min_rows}")
    keep = sample_index([str(r.get("id", r["text"])) for r in records], params.max_rows, params.seed)
    records = [records[i] for i in keep]
    frame = text_frame(
        [r["text"] for r in records], [r[PREDICTION] for r in records], [r[SCORE] for r in records]
    )
    frame[LABEL] = [r.get(LABEL) for r in records]
    labels = sorted({str(v) for v in frame[LABEL] if v is not None} | {str(v) for v in frame[PREDICTION]})
    reference = Reference(path, frame, labels)
    _REFERENCE_CACHE.clear()  # one reference per process is enough; a changed file replaces it
    _REFERENCE_CACHE[key] = reference
    return reference


def latency_summary(latency_ms: Sequence[float]) -> dict[str, Any]:
    """Mean, p50/p95/p99 (linear interpolation) and max of server latency (ms); None when empty."""
    import numpy as np

    if len(latency_ms) == 0:
        return {"mean_ms": None, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    values = np.asarray(latency_ms, dtype=float)
    p50, p95, p99 = np.quantile(values, [0.5, 0.95, 0.99])
    return {
        "mean_ms": float(values.mean()),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "max_ms": float(values.max()),
    }


def quality_summary(labels: Sequence[str], predictions: Sequence[str], min_labels: int) -> dict[str, Any]:
    """Accuracy and macro-F1 (llm.scoring) on labelled rows, or why not."""
    from llm.scoring import accuracy, macro_f1

    if len(labels) < min_labels:
        return {
            "labelled": len(labels),
            "skipped": SKIPPED_TOO_FEW_LABELS,
            "accuracy": None,
            "macro_f1": None,
        }
    classes = sorted(set(labels) | set(predictions))
    return {
        "labelled": len(labels),
        "accuracy": accuracy(labels, predictions),
        "macro_f1": macro_f1(labels, predictions, classes),
    }


def ops_frame(rows: Any, usd_per_hour: float) -> Any:
    """The per-row operational columns (``OPS_COLUMNS``) of window rows."""
    frame = rows[[LATENCY, "compute_ms", "tokens"]].astype(float).copy()
    frame["usd"] = frame["compute_ms"] / 3.6e6 * usd_per_hour
    frame["micro_usd"] = frame["usd"] * 1e6
    return frame[list(OPS_COLUMNS)].reset_index(drop=True)


def training_metrics(
    stage_dirs: Mapping[str, str | os.PathLike | None],
) -> dict[str, dict[str, Any] | None]:
    """``{stage: metrics.json}`` of every training stage (``TRAINING_STAGES``, and any other stage
    in ``stage_dirs``) from its folder (a local path or fsspec URI; None or "" = not given). None
    when not given or absent: ``monitoring.cost.training_cost`` then lists the stage as missing."""
    out: dict[str, dict[str, Any] | None] = {}
    for stage in dict.fromkeys([*TRAINING_STAGES, *stage_dirs]):
        folder, metrics = stage_dirs.get(stage), None
        if folder:
            try:
                metrics = read_json(f"{str(folder).rstrip('/')}/{artifacts.METRICS}")
            except FileNotFoundError:
                metrics = None
        out[stage] = metrics
    return out


def judge_version(
    version: str,
    rows: Any,
    previous: Any | None,
    reference: Reference,
    drift_params: DriftParams,
    settings: Settings,
    out: Path,
    window: Mapping[str, Any],
    end: datetime,
    release: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Summary and Evidently snapshots ({tag: snapshot}) of one model version's window rows.
    ``release``: the released version's ROI figures (``monitoring.roi.read_release``), shown
    beside this window's serving cost when ``version`` is the release."""
    meta = {"model_version": version, "window_start": window["start"], "window_end": window["end"]}
    snapshots: dict[str, Any] = {}
    requests = int(rows["request_id"].nunique())
    summary: dict[str, Any] = {
        "model_version": version,
        "rows": len(rows),
        "requests": requests,
        "predictions_by_label": {str(k): int(v) for k, v in sorted(rows[PREDICTION].value_counts().items())},
    }

    # Drift: a seeded sample against the reference.
    if len(rows) < drift_params.min_rows:
        summary["drift"] = {"drift_detected": None, "skipped": SKIPPED_TOO_FEW_ROWS}
        summary["prediction_drift"] = summary["score_drift"] = {
            "drift_detected": None,
            "skipped": SKIPPED_TOO_FEW_ROWS,
        }
    else:
        keys = (rows["request_id"] + ":" + rows["item"].astype(str)).tolist()
        sample = rows.iloc[sample_index(keys, drift_params.max_rows, drift_params.seed)]
        current = text_frame(sample["text"].tolist(), sample[PREDICTION].tolist(), sample[SCORE].tolist())
        reference_frame = reference.frame.drop(columns=[LABEL])
        snapshot = run_drift_report(
            reference_frame, current, drift_params, settings, timestamp=end, tags=["drift"], metadata=meta
        )
        report = write_report(snapshot, out / version / "drift")
        summary.update(read_drift(report, drift_params.drift_share))
        summary["drift"]["rows"] = len(sample)
        snapshots["drift"] = snapshot

    # Quality on labelled rows.
    labelled = rows[rows[LABEL].notna()]
    quality = quality_summary(
        labelled[LABEL].astype(str).tolist(),
        labelled[PREDICTION].astype(str).tolist(),
        settings.alerts.min_labels,
    )
    summary["quality"] = quality
    reference_labelled = reference.frame[reference.frame[LABEL].notna()]
    if quality.get("accuracy") is not None and len(reference_labelled) > 0:
        try:
            snapshot = run_quality_report(
                reference_labelled, labelled, reference.labels, timestamp=end, tags=["quality"], metadata=meta
            )
        except (
            KeyError,
            ValueError,
        ) as exc:  # e.g. a class absent from one side: Evidently's by-label view fails
            log.warning("monitoring: quality report for %s skipped: %s: %s", version, type(exc).__name__, exc)
            snapshot = None
        if snapshot is not None:
            write_report(snapshot, out / version / "quality")
            snapshots["quality"] = snapshot

    # Latency and cost over every row; latency drift against the previous window.
    latency = latency_summary(rows[LATENCY].tolist())
    current_ops = ops_frame(rows, settings.prices.serve_usd_per_hour)
    previous_ops = None
    if previous is not None and len(previous) >= drift_params.min_rows:
        previous_ops = ops_frame(previous, settings.prices.serve_usd_per_hour)
    snapshot = run_ops_report(current_ops, previous_ops, settings, timestamp=end, tags=["ops"], metadata=meta)
    report = write_report(snapshot, out / version / "ops")
    snapshots["ops"] = snapshot
    latency["drift"] = (read_latency_drift(report) if previous_ops is not None else None) or {
        "drift_detected": None,
        "skipped": SKIPPED_NO_PREVIOUS,
    }
    summary["latency"] = latency
    summary["cost"] = serving_cost(
        requests=requests,
        predictions=len(rows),
        tokens=int(rows["tokens"].sum()),
        compute_seconds=float(rows["compute_ms"].sum()) / 1000.0,
        usd_per_hour=settings.prices.serve_usd_per_hour,
    )
    # Return on investment: the live cost per unit beside the release's training cost and gain.
    summary["roi"] = version_roi(version, summary["cost"], release)
    snapshot = roi_report(summary["roi"], timestamp=end, metadata=meta)
    if snapshot is not None:
        write_report(snapshot, out / version / TAG_ROI)
        snapshots[TAG_ROI] = snapshot
    return summary, snapshots


def monitor_window(
    log_uri: str,
    reference: str | os.PathLike,
    output: str | os.PathLike,
    drift_params: DriftParams,
    settings: Settings,
    end: datetime,
    *,
    workspace: str | os.PathLike | None = None,
    training: Mapping[str, str | os.PathLike | None] | None = None,
    now: datetime | None = None,
    generations_reference: str | os.PathLike | None = None,
    release: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Judge the window ending at ``end``; write ``output``; return the run summary.
    ``release``: deploy's output folder (its roi.json: the release's training cost, gain and USD
    per macro-F1 point, ``monitoring.roi``; None = not given, ``release_roi.skipped`` says so).

    ``training``: ``{"pretrain": dir, "finetune": dir}`` whose metrics.json give the training
    cost (a stage not given is listed in ``training_cost.stages_missing``). ``now``: the time up
    to which labels are read (default: the current time). ``generations_reference``: evaluate's
    generations.jsonl (None or absent: generations are judged without drift, ``no_reference``).
    """
    started = time.perf_counter()
    start, end = window_bounds(end, settings.window_minutes)
    window = {"start": start.isoformat(), "end": end.isoformat(), "minutes": settings.window_minutes}
    read = read_window_with_labels(log_uri, start, end, now)
    frame = read.frame
    span = end - start
    previous_frame = read_window(log_uri, start - span, start).frame
    ref = load_reference(reference, drift_params)
    release_roi = read_release(release)
    generated = read_generations(log_uri, start, end)
    generation_frame = generated.frame
    gen_ref = (
        load_generation_reference(generations_reference, drift_params, settings.repetition_ngram)
        if len(generation_frame)
        else None
    )
    generator_snapshots: dict[str, dict[str, Any]] = {}
    versions: dict[str, Any] = {}
    alerts: list[Alert] = []
    snapshots: dict[str, dict[str, Any]] = {}
    with atomic_output_dir(str(output)) as out:
        for version in sorted(frame["model_version"].unique()) if len(frame) else []:
            rows = frame[frame["model_version"] == version].reset_index(drop=True)
            previous = previous_frame[previous_frame["model_version"] == version]
            summary, snapshots[version] = judge_version(
                version, rows, previous, ref, drift_params, settings, out, window, end, release=release_roi
            )
            versions[version] = summary
            alerts += check_alerts(summary, settings.alerts)
        generations: dict[str, Any] = no_generations()
        if len(generation_frame):
            generations = {
                "rows": len(generation_frame),
                "requests": int(generation_frame["request_id"].nunique()),
                "reference_rows": None if gen_ref is None else len(gen_ref.frame),
                "versions": {},
            }
        for version in sorted(generation_frame["model_version"].unique()) if len(generation_frame) else []:
            rows = generation_frame[generation_frame["model_version"] == version].reset_index(drop=True)
            summary, generator_snapshots[version] = judge_generations(
                version, rows, gen_ref, drift_params, settings, out, window, end
            )
            generations["versions"][version] = summary
            alerts += check_generation_alerts(summary, settings.alerts)
        result = {
            "window": window,
            "rows": len(frame),
            "requests": int(frame["request_id"].nunique()) if len(frame) else 0,
            "partitions_read": read.partitions,
            "versions": versions,
            "generations": generations,
            "generation_rows": len(generation_frame),
            "training_cost": training_cost(
                training_metrics(training or {}), settings.prices.train_usd_per_hour
            ),
            "release_roi": release_roi,
            "alerts": len(alerts),
            "alert_kinds": sorted({a.kind for a in alerts}),
            "reference_rows": len(ref.frame),
            "seconds": time.perf_counter() - started,
        }
        write_json(out / ALERTS_FILE, alert_payload(alerts, window))
        result = significant(result)
        write_json(out / METRICS_FILE, result)
    if workspace is not None:
        from monitoring.workspace import GENERATOR, add_snapshots, open_workspace

        ws = open_workspace(workspace)
        for version, version_snapshots in snapshots.items():
            add_snapshots(ws, version, version_snapshots, run_name=f"window {window['end']}")
        for version, version_snapshots in generator_snapshots.items():
            add_snapshots(ws, version, version_snapshots, run_name=f"window {window['end']}", kind=GENERATOR)
    for alert in alerts:
        log.warning("ALERT %s [%s]: %s", alert.kind, alert.model_version, alert.message)
    missing = result["training_cost"]["missing_reasons"]
    if missing:
        log.warning(
            "monitoring: training cost unknown, stages missing: %s",
            ", ".join(f"{stage} ({why})" for stage, why in missing.items()),
        )
    if not len(generation_frame):
        log.info("monitoring: %s", result["generations"]["message"])
    log.info(
        "monitoring: window %s .. %s: %d predictions, %d generations, %d versions, %d alerts, %.1fs",
        window["start"],
        window["end"],
        result["rows"],
        result["generation_rows"],
        len(versions),
        len(alerts),
        result["seconds"],
    )
    return result


def run_dir(root: str | os.PathLike, end: datetime) -> Path:
    """``root/<window end as YYYYmmddTHHMMSSZ>``: one folder per run."""
    return Path(root) / end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def run_forever(
    once: Callable[[datetime], dict[str, Any]],
    interval_s: float,
    max_runs: int | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], Any] = time.sleep,
    stop: Callable[[], bool] = lambda: False,
) -> list[dict[str, Any]]:
    """Call ``once(end)`` every ``interval_s`` seconds (end = the clock at each start) until
    ``stop()`` or ``max_runs`` runs; return the summaries. A failing run is logged, not fatal:
    the next interval tries again (a monitor that dies on one bad window watches nothing)."""
    results = []
    runs = 0
    while not stop() and (max_runs is None or runs < max_runs):
        began = time.monotonic()
        try:
            results.append(once(clock()))
        except Exception:
            log.exception("monitoring: run failed; next try in %.0fs", interval_s)
            results.append({"failed": True, "alerts": 0})
        runs += 1
        if max_runs is not None and runs >= max_runs:
            break
        wait = max(0.0, interval_s - (time.monotonic() - began))
        deadline = time.monotonic() + wait
        while not stop() and time.monotonic() < deadline:
            sleep(min(1.0, deadline - time.monotonic()))
    return results


def window_end_floor(now: datetime, minutes: int) -> datetime:
    """``now`` rounded down to a multiple of ``minutes`` since midnight UTC (aligned windows)."""
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = int((now - midnight).total_seconds() // 60)
    return midnight + timedelta(minutes=elapsed - elapsed % minutes)


def run_once(
    log_uri: str,
    reference: str | os.PathLike,
    output_root: str | os.PathLike,
    drift_params: DriftParams,
    settings: Settings,
    end: datetime,
    *,
    workspace: str | os.PathLike | None = None,
    training: Mapping[str, str | os.PathLike | None] | None = None,
    webhook: str | None = None,
    now: datetime | None = None,
    generations_reference: str | os.PathLike | None = None,
    release: str | os.PathLike | None = None,
) -> tuple[dict[str, Any], Path]:
    """One run into ``output_root/<window end>``, its alert JSON also copied to
    ``output_root/alerts.json`` (the latest run's), and POSTed to ``webhook`` when it alerts.
    ``now``: the time up to which labels are read (default: the current time).
    ``generations_reference``: evaluate's generations.jsonl; ``release``: deploy's output
    (``monitor_window``).
    Returns (summary, run folder)."""
    from monitoring.alerts import post_webhook

    folder = run_dir(output_root, window_bounds(end, settings.window_minutes)[1])
    summary = monitor_window(
        log_uri,
        reference,
        folder,
        drift_params,
        settings,
        end,
        workspace=workspace,
        training=training,
        now=now,
        generations_reference=generations_reference,
        release=release,
    )
    payload = read_json(folder / ALERTS_FILE)
    payload["report"] = str(folder)
    write_json(Path(output_root) / ALERTS_FILE, payload)
    if webhook and payload["alerting"]:
        post_webhook(webhook, payload)
    return summary, folder


def window_end_of(
    window_end: str | datetime | None, minutes: int, aligned: bool, now: datetime | None = None
) -> datetime:
    """The end of the window a run judges: ``window_end`` (ISO-8601 text or a datetime; empty or
    None = ``now``, default the current time), rounded down to a multiple of ``minutes`` since
    midnight UTC when ``aligned``."""
    if isinstance(window_end, datetime):
        end = window_end
    elif window_end:
        end = parse_time(window_end)
    else:
        end = now if now is not None else datetime.now(UTC)
    return window_end_floor(end, minutes) if aligned else end


def run_scheduled(
    log_uri: str,
    reference: str | os.PathLike,
    output: str | os.PathLike,
    drift_params: DriftParams,
    settings: Settings,
    window_end: str | datetime | None = "",
    *,
    aligned: bool = True,
    workspace: str | os.PathLike | None = None,
    webhook: str | None = None,
    training: Mapping[str, str | os.PathLike | None] | None = None,
    now: datetime | None = None,
    generations_reference: str | os.PathLike | None = None,
    on_alert: str = "off",
    retrain_target: Any = None,
    force: bool = False,
    clock: Callable[[], datetime] | None = None,
    release: str | os.PathLike | None = None,
) -> tuple[dict[str, Any], Path]:
    """One monitor run, as ``python -m monitoring`` and the Kubeflow component make it.
    ``release``: deploy's output folder, whose roi.json gives the release's ROI figures (empty =
    not given).

    Chooses the window end (``window_end_of``: ``window_end`` or the run's time, rounded down to
    a whole window when ``aligned``), judges that window (``run_once``: reports, metrics.json and
    alerts.json in ``output/<window end>/``, the latest alert JSON in ``output/alerts.json``, the
    webhook POSTed on an alert) and writes ``report.html`` into the run folder: every report of
    the run on one page. Empty strings mean "not given" for ``workspace``, ``webhook`` and the
    ``training`` folders (Kubeflow passes optional strings as ""). ``now``: the run's time
    (default: the current time). ``generations_reference``: evaluate's generations.jsonl (empty =
    not given). Returns (summary, run folder); ``summary["alerts"]`` counts the
    alerts (``monitoring.alerts.raise_on_alert`` turns them into an error).

    ``on_alert``: ``off`` (default) or ``retrain``: then ``monitoring.retrain.on_alert`` acts on the
    alerts with ``retrain_target`` (a ``LocalTarget`` or ``KubeflowTarget``), ``force`` (start a
    retraining outside the off-peak window) and ``clock`` (the time the window is checked at;
    default the current time); its decision is ``summary["retrain"]`` and the run folder's
    retrain.json.
    """
    end = window_end_of(window_end, settings.window_minutes, aligned, now)
    summary, folder = run_once(
        log_uri,
        reference,
        output,
        drift_params,
        settings,
        end,
        workspace=workspace or None,
        training=training,
        webhook=webhook or None,
        now=now,
        generations_reference=generations_reference or None,
        release=release or None,
    )
    combined_html(run_pages(folder), folder / REPORT_HTML)
    if on_alert not in ("off", "retrain"):
        raise ValueError(f"on_alert: expected 'off' or 'retrain', got {on_alert!r}")
    if on_alert == "retrain":
        from monitoring.retrain import on_alert as act

        if retrain_target is None:
            raise ValueError("on_alert 'retrain' needs a retrain_target (the project or the Kubeflow host)")
        extra = {"clock": clock} if clock is not None else {}
        summary["retrain"] = act(
            summary, settings, retrain_target, log_uri, folder, force=force, now=now, **extra
        )
    return summary, folder


def headline_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a run summary a Kubeflow run shows in its Metrics artifact."""
    return {k: v for k, v in summary.items() if k in HEADLINE_KEYS}


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy one file of a run folder to an output artifact's path (its folder created)."""
    import shutil

    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
