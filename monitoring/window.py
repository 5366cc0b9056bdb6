"""Read exactly one time window of the prediction log (serving.prediction_log's layout).

A window is half-open, ``[start, end)`` in UTC: a row stamped exactly ``end`` belongs to the next
window, so back-to-back windows never count a prediction twice or miss one. Only the ``date=``
partitions that overlap the window are listed and opened (a day-old log costs nothing to skip),
and the timestamp filter is pushed into the Parquet scan.

Late labels (the ``labels`` log) are joined to predictions by ``(request_id, item)``; when a
prediction got several labels, the latest one counts.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from serving.prediction_log import GENERATIONS, LABELS, PREDICTIONS, schema, to_utc

PARTITION_PREFIX = "date="


@dataclasses.dataclass
class WindowRead:
    """The rows of one window (a pandas DataFrame) and what was opened to get them."""

    frame: Any
    start: datetime
    end: datetime
    partitions: list[str]  # date partitions listed (YYYY-MM-DD), in order
    files: list[str]  # Parquet files opened


def window_bounds(end: datetime, minutes: int) -> tuple[datetime, datetime]:
    """``(end - minutes, end)`` as UTC datetimes (``end`` naive = UTC)."""
    end = to_utc(end)
    return end - timedelta(minutes=minutes), end


def parse_time(value: str) -> datetime:
    """An ISO-8601 time (``2026-05-01T12:00:00Z``, ``...+02:00``, naive = UTC) as a UTC datetime."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return to_utc(datetime.fromisoformat(text))


def partition_dates(start: datetime, end: datetime) -> list[str]:
    """The ``YYYY-MM-DD`` days that overlap ``[start, end)`` (none when end <= start)."""
    start, end = to_utc(start), to_utc(end)
    if end <= start:
        return []
    last = (end - timedelta(microseconds=1)).date()
    day, days = start.date(), []
    while day <= last:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def _files(fs: Any, folder: str) -> list[str]:
    if not fs.isdir(folder):
        return []
    names = sorted(fs.ls(folder, detail=False))
    # Dot files are parts still being written (serving.prediction_log renames them when done).
    return [p for p in names if p.endswith(".parquet") and not p.rsplit("/", 1)[-1].startswith((".", "_"))]


def read_window(log_uri: str, start: datetime, end: datetime, kind: str = PREDICTIONS) -> WindowRead:
    """Rows of the ``kind`` log (``predictions``, ``labels`` or ``generations``) with ``start <= ts < end``.

    The frame has the log's columns (``ts`` as a UTC timestamp), sorted by ``ts`` then
    ``request_id`` and ``item``; empty (with those columns) when nothing matched.
    """
    import fsspec
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    start, end = to_utc(start), to_utc(end)
    fs, root = fsspec.core.url_to_fs(f"{str(log_uri).rstrip('/')}/{kind}")
    dates = partition_dates(start, end)
    files = [f for date in dates for f in _files(fs, f"{root}/{PARTITION_PREFIX}{date}")]
    log_schema = schema(kind)
    if files:
        ts_type = log_schema.field("ts").type
        dataset = ds.dataset(files, schema=log_schema, format="parquet", filesystem=fs)
        condition = (pc.field("ts") >= pa.scalar(start, ts_type)) & (pc.field("ts") < pa.scalar(end, ts_type))
        table = dataset.to_table(filter=condition)
    else:
        table = log_schema.empty_table()
    frame = table.to_pandas()
    frame = frame.sort_values(["ts", "request_id", "item"], kind="stable").reset_index(drop=True)
    return WindowRead(frame, start, end, dates, files)


def attach_labels(predictions: Any, labels: Any) -> Any:
    """``predictions`` with a ``label`` column: the latest label per ``(request_id, item)``, or
    None where no label arrived. Labels for other requests are ignored."""
    frame = predictions.copy()
    if labels is None or len(labels) == 0:
        frame["label"] = None
        return frame
    latest = labels.sort_values("ts", kind="stable").drop_duplicates(["request_id", "item"], keep="last")
    merged = frame.merge(latest[["request_id", "item", "label"]], on=["request_id", "item"], how="left")
    merged["label"] = merged["label"].astype(object).where(merged["label"].notna(), None)
    return merged


def read_window_with_labels(
    log_uri: str, start: datetime, end: datetime, now: datetime | None = None
) -> WindowRead:
    """The predictions of ``[start, end)`` with the labels that arrived in ``[start, now)``
    (``now`` defaults to the current time: labels come after their predictions, and may come
    after the window has closed)."""
    read = read_window(log_uri, start, end, PREDICTIONS)
    until = to_utc(now) if now is not None else datetime.now(UTC)
    labels = read_window(log_uri, start, max(until, end), LABELS)
    read.frame = attach_labels(read.frame, labels.frame)
    read.files = read.files + labels.files
    return read


def read_generations(log_uri: str, start: datetime, end: datetime) -> WindowRead:
    """The generations (POST /generate, the log's ``generations`` kind) stamped in ``[start, end)``:
    one row per prompt of a request, the log's columns; empty (with those columns) when the log has
    none (a release without a generator, or no traffic)."""
    return read_window(log_uri, start, end, GENERATIONS)
