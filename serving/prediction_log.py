"""The prediction log: every prediction (and every late label) as Parquet, partitioned by date.

Layout under the log URI (a local folder, or s3://bucket/prefix in production)::

    predictions/date=YYYY-MM-DD/part-<UTC time>-<random>.parquet   PREDICTION_SCHEMA
    labels/date=YYYY-MM-DD/part-<UTC time>-<random>.parquet        LABEL_SCHEMA

The ``date=`` folders are Hive partitions (pyarrow, Spark, DuckDB and Athena read them as a
column), taken from each row's own UTC timestamp, so a reader of a time window opens only the
days it needs. Rows are buffered in memory and written in batches: when ``flush_rows`` rows are
waiting, every ``flush_seconds`` (a background thread), and on ``close()``. A local file is
written under a dot-name and renamed into place, so readers (which skip dot files) never see a
half-written part; an object store's put is atomic by itself. A failed write keeps the rows in
the buffer for the next try: a row leaves memory only once it is on storage.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("serving.log")

PREDICTIONS = "predictions"
LABELS = "labels"


def _schemas():
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    predictions = pa.schema(
        [
            ("request_id", pa.string()),  # one id per HTTP request
            ("item", pa.int32()),  # position of the text in the request (0 for a single text)
            ("ts", ts),  # when the server received the request (UTC)
            ("text", pa.string()),
            ("prediction", pa.string()),  # predicted label
            ("score", pa.float64()),  # probability of the predicted label (0-1)
            ("latency_ms", pa.float64()),  # request received -> result ready, in the server (ms)
            ("compute_ms", pa.float64()),  # this text's share of its forward pass (ms)
            ("tokens", pa.int32()),  # tokens the model read for this text
            ("model_version", pa.string()),
        ]
    )
    labels = pa.schema(
        [
            ("request_id", pa.string()),
            ("item", pa.int32()),
            ("ts", ts),  # when the label arrived (UTC)
            ("label", pa.string()),  # the true label
        ]
    )
    return {PREDICTIONS: predictions, LABELS: labels}


def schema(kind: str):
    """The pyarrow schema of ``kind`` (``predictions`` or ``labels``)."""
    return _schemas()[kind]


def partition_date(ts: datetime) -> str:
    """``YYYY-MM-DD`` of a UTC timestamp (naive timestamps are taken as UTC)."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%d")


def to_utc(ts: float | datetime) -> datetime:
    """A timezone-aware UTC datetime from epoch seconds or a datetime (naive = UTC)."""
    if isinstance(ts, datetime):
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return datetime.fromtimestamp(ts, UTC)


class ParquetLog:
    """A buffered, date-partitioned Parquet writer for one kind of row (thread-safe).

    ``append(rows)`` only takes the lock and extends a list (and wakes the flusher thread when
    ``flush_rows`` are waiting); the writing happens in ``flush``, called by that thread, by
    ``close``, or by ``append`` itself when there is no background thread.
    """

    def __init__(
        self,
        uri: str,
        kind: str,
        flush_rows: int = 2000,
        flush_seconds: float = 5.0,
        background: bool = True,
    ):
        import fsspec

        self.uri = str(uri).rstrip("/")
        self.kind = kind
        self.schema = schema(kind)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.fs, self.root = fsspec.core.url_to_fs(f"{self.uri}/{kind}")
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.local = "file" in protocols
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # guards _rows
        self._write_lock = threading.Lock()  # one flush at a time (keeps rows in order)
        self._closed = threading.Event()
        self._wake = threading.Event()  # set by append when the buffer is full, and by close
        self.rows_written = 0
        self.files_written = 0
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._run, name=f"{kind}-log-flush", daemon=True)
            self._thread.start()

    @property
    def pending(self) -> int:
        """Rows in memory, not yet on storage."""
        with self._lock:
            return len(self._rows)

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Buffer rows (dicts with the schema's columns; ``ts`` as datetime or epoch seconds)."""
        if self._closed.is_set():
            raise RuntimeError(f"{self.kind} log {self.uri} is closed")
        with self._lock:
            self._rows.extend(dict(r) for r in rows)
            full = len(self._rows) >= self.flush_rows
        if full:
            if self._thread is None:
                self.flush()
            else:  # the flusher thread writes: the caller may be an event loop that must not block
                self._wake.set()

    def flush(self) -> int:
        """Write every buffered row (one file per date); return the number written.

        If a write fails, the rows not yet written go back to the front of the buffer and the
        error is raised (the background thread logs it and retries on its next tick).
        """
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            by_date: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                row["ts"] = to_utc(row["ts"])
                by_date.setdefault(partition_date(row["ts"]), []).append(row)
            dates = sorted(by_date)
            written = 0
            for i, date in enumerate(dates):
                try:
                    self._write(date, by_date[date])
                except Exception:
                    rest = [row for d in dates[i:] for row in by_date[d]]
                    with self._lock:
                        self._rows[:0] = rest
                    log.exception(
                        "%s log: writing %d rows to %s failed; kept in memory", self.kind, len(rest), self.uri
                    )
                    raise
                written += len(by_date[date])
                self.rows_written += len(by_date[date])
                self.files_written += 1
            return written

    def _write(self, date: str, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows, schema=self.schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        folder = f"{self.root}/date={date}"
        if self.local:
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{name}.tmp")
            with open(tmp, "wb") as f:
                f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(folder, name))
        else:
            self.fs.pipe_file(f"{folder}/{name}", buffer.getvalue())

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._closed.is_set():
                break  # close() writes the rest itself
            # A failed write is logged by flush and its rows stay buffered: the next tick retries.
            with contextlib.suppress(Exception):
                self.flush()

    def close(self) -> None:
        """Stop the background thread and write what is left (raises if that last write fails)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()


class PredictionLog:
    """The two logs of one server: predictions and late labels, under one URI."""

    def __init__(self, uri: str, flush_rows: int = 2000, flush_seconds: float = 5.0, background: bool = True):
        self.uri = str(uri).rstrip("/")
        self.predictions = ParquetLog(self.uri, PREDICTIONS, flush_rows, flush_seconds, background)
        self.labels = ParquetLog(self.uri, LABELS, flush_rows, flush_seconds, background)

    def flush(self) -> None:
        self.predictions.flush()
        self.labels.flush()

    def close(self) -> None:
        """Write everything still buffered (both logs, even if one fails)."""
        errors = []
        for part in (self.predictions, self.labels):
            try:
                part.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def now_utc(clock: Callable[[], float] = time.time) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)
