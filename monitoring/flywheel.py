"""The data flywheel: served predictions whose true labels came back become new task data.

``harvest(log_uri, feedback_uri, end)`` reads every prediction stamped before ``end`` with the
labels that arrived for it (``monitoring.window``: the latest label of a (request id, item)
counts), and writes the labelled ones not harvested before into
``<feedback_uri>/feedback-<end>.jsonl`` (one row per (request id, item): ``{id, request_id, item,
text, label, prediction, model_version, logged_at}``; written whole or not at all). The folder is
the ingest stage's ``--feedback`` input (``llm.feedback`` says what becomes of each
row), so a harvest is a new version of the task data: DVC sees the folder's hash change and reruns
the DAG from ingest.

Every prediction is accounted for, once: ``predictions = unlabelled + labelled``, ``labelled =
already_harvested + written``; a row the log holds twice (the same request id and item) is
counted once, in ``duplicate_rows``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from components.common.io import jsonl_line, read_jsonl, write_text
from components.common.lineage import dataset_version
from llm.feedback import FILE_PREFIX, SOURCE, feedback_files
from monitoring.window import PARTITION_PREFIX, read_window_with_labels
from serving.prediction_log import PREDICTIONS, to_utc

log = logging.getLogger("monitoring.flywheel")

ID_PREFIX = f"{SOURCE}:"
harvest_files = feedback_files  # the harvest files in the folder (none when it does not exist yet)


def feedback_version(feedback_uri: str) -> str:
    """The content version of the harvest files (``components.common.lineage``), as ingest records
    it in dataset.json's ``feedback_version``."""
    return str(dataset_version(harvest_files(feedback_uri))["version"])


def harvested_keys(feedback_uri: str) -> set[tuple[str, int]]:
    """The (request id, item) pairs the folder's harvest files already hold."""
    return {
        (str(r.get("request_id")), int(r.get("item", 0)))
        for path in harvest_files(feedback_uri)
        for r in read_jsonl(path)
    }


def first_day(log_uri: str) -> datetime | None:
    """Midnight UTC of the prediction log's first ``date=`` partition; None for an empty log."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(f"{str(log_uri).rstrip('/')}/{PREDICTIONS}")
    if not fs.isdir(root):
        return None
    days = sorted(
        name.rsplit("/", 1)[-1][len(PARTITION_PREFIX) :]
        for name in fs.ls(root, detail=False)
        if name.rsplit("/", 1)[-1].startswith(PARTITION_PREFIX)
    )
    return datetime.fromisoformat(days[0]).replace(tzinfo=UTC) if days else None


def harvest(log_uri: str, feedback_uri: str, end: datetime, now: datetime | None = None) -> dict[str, Any]:
    """Write the labelled predictions before ``end`` not harvested yet; return the counts, the file
    written (None when nothing was new) and the folder's version after it."""
    end = to_utc(end)
    start = first_day(log_uri)
    counts: dict[str, Any] = {
        "predictions": 0,
        "duplicate_rows": 0,
        "unlabelled": 0,
        "labelled": 0,
        "already_harvested": 0,
        "written": 0,
        "file": None,
    }
    if start is not None and start < end:
        frame = read_window_with_labels(log_uri, start, end, now).frame
        unique = frame.drop_duplicates(["request_id", "item"], keep="first")
        counts["duplicate_rows"] = len(frame) - len(unique)
        counts["predictions"] = len(unique)
        labelled = unique[unique["label"].notna()]
        counts["labelled"] = len(labelled)
        counts["unlabelled"] = len(unique) - len(labelled)
        done = harvested_keys(feedback_uri)
        rows = []
        for r in labelled.itertuples(index=False):
            key = (str(r.request_id), int(r.item))
            if key in done:
                counts["already_harvested"] += 1
                continue
            rows.append(
                {
                    "id": f"{ID_PREFIX}{r.request_id}:{int(r.item)}",
                    "request_id": str(r.request_id),
                    "item": int(r.item),
                    "text": str(r.text),
                    "label": str(r.label),
                    "prediction": str(r.prediction),
                    "model_version": str(r.model_version),
                    "logged_at": r.ts.isoformat(),
                }
            )
        if rows:
            rows.sort(key=lambda row: (row["request_id"], row["item"]))
            name = f"{FILE_PREFIX}{end:%Y%m%dT%H%M%SZ}.jsonl"
            path = f"{str(feedback_uri).rstrip('/')}/{name}"
            write_text(path, "".join(jsonl_line(row) for row in rows))
            counts["written"], counts["file"] = len(rows), path
    counts["version"] = feedback_version(feedback_uri)
    log.info(
        "flywheel: %d predictions before %s, %d labelled, %d harvested before, %d written%s",
        counts["predictions"],
        end.isoformat(),
        counts["labelled"],
        counts["already_harvested"],
        counts["written"],
        f" to {counts['file']}" if counts["file"] else "",
    )
    return counts
