"""monitor core: each batch of texts against the reference -> Evidently drift report + verdict.

Inputs: ``reference``, a JSONL file {id, text, ...} (evaluate's predictions.jsonl: the test split
the model was judged on) and ``batches``, a folder of JSONL files {id, text[, label]}, one batch per
file (ingest's batches/: reviews.jsonl, held-out reviews, should NOT drift; plots.jsonl, plot
summaries, should). Output folder::

    <batch>/report.html   Evidently's report (ids made deterministic)
    <batch>/report.json   Evidently's metrics (snapshot.dict())
    metrics.json          {"batches": {<batch>: {drift_detected, drift_share, drifted_columns,
                           columns, rows, scores}}, "alerts": <drifted batches>, "reference_rows": n}

The Evidently work lives in ``llm.drift`` (the report and verdict the continuous monitor shares);
this module reads, samples and writes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from components.common.io import atomic_output_dir, list_files, read_jsonl
from components.common.metrics import write_metrics
from components.common.seed import stable_hash
from components.monitor.params import Params

log = logging.getLogger("monitor")

BATCH_SUFFIXES = (".jsonl.gz", ".jsonl")
SKIPPED_TOO_FEW_ROWS = "too_few_rows"


def batch_name(path: str) -> str:
    """``.../plots.jsonl`` -> ``plots`` (the batch's folder name and metrics key)."""
    name = Path(path).name
    for suffix in BATCH_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def usable_texts(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(id, text) of the records with a non-blank string text; the id falls back to the text."""
    out = []
    for record in records:
        text = record.get("text")
        if isinstance(text, str) and text.strip():
            out.append((str(record.get("id", text)), text))
    return out


def sample_texts(rows: list[tuple[str, str]], max_rows: int, seed: int) -> list[str]:
    """At most ``max_rows`` texts, chosen by a seeded hash of the id (independent of file order);
    the chosen ones keep their file order."""
    if len(rows) <= max_rows:
        return [text for _, text in rows]
    ranked = sorted(range(len(rows)), key=lambda i: (stable_hash(rows[i][0], seed), i))
    keep = sorted(ranked[:max_rows])
    return [rows[i][1] for i in keep]


def batch_metrics(verdict: Any, rows: int) -> dict[str, Any]:
    """The metrics.json entry of one judged batch (``verdict``: a llm.drift.DriftVerdict)."""
    return {
        "drift_detected": verdict.drift_detected,
        "drift_share": verdict.drift_share,
        "drifted_columns": verdict.drifted_columns,
        "columns": verdict.columns,
        "rows": rows,
        "scores": verdict.scores,
    }


def run(
    reference: str | os.PathLike, batches: str | os.PathLike, output: str, params: Params
) -> dict[str, Any]:
    """Judge every batch file under ``batches`` against ``reference``; write ``output``; return metrics.

    Raises ValueError when the reference has fewer than ``params.min_rows`` texts or two batch
    files share a name. A batch with fewer than ``min_rows`` texts is listed with
    ``"skipped": "too_few_rows"`` and no report; ``alerts`` counts the batches flagged drifted.
    """
    from llm.drift import read_verdict, run_drift, write_report

    ref_rows = usable_texts(read_jsonl(reference))
    if len(ref_rows) < params.min_rows:
        raise ValueError(f"reference {reference}: {len(ref_rows)} texts, need at least {params.min_rows}")
    ref_texts = sample_texts(ref_rows, params.max_rows, params.seed)

    files = list_files(batches, BATCH_SUFFIXES)
    names = [batch_name(f) for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"batches {batches}: two files for batch {duplicates[0]!r}")

    results: dict[str, Any] = {}
    with atomic_output_dir(output) as out:
        for name, file in zip(names, files, strict=True):
            rows = usable_texts(read_jsonl(file))
            if len(rows) < params.min_rows:
                log.warning("batch %s: %d texts < min_rows %d, skipped", name, len(rows), params.min_rows)
                results[name] = {"drift_detected": None, "rows": len(rows), "skipped": SKIPPED_TOO_FEW_ROWS}
                continue
            texts = sample_texts(rows, params.max_rows, params.seed)
            snapshot = run_drift(ref_texts, texts, params)
            report = write_report(snapshot, out / name)
            verdict = read_verdict(report, params.drift_share)
            results[name] = batch_metrics(verdict, len(texts))
            log.info(
                "batch %s: %d rows, drift=%s (%d/%d columns drifted), scores %s",
                name,
                len(texts),
                verdict.drift_detected,
                verdict.drifted_columns,
                verdict.columns,
                ", ".join(f"{k}={v:.3f}" for k, v in verdict.scores.items()),
            )
        metrics = {
            "batches": results,
            "alerts": sum(1 for r in results.values() if r["drift_detected"]),
            "reference_rows": len(ref_texts),
        }
        return write_metrics(out, metrics)
