"""The prediction log: every prediction (and every late label) as Parquet, partitioned by date.

Layout under the log URI (a local folder, or s3://bucket/prefix in production)::

    predictions/date=YYYY-MM-DD/part-<UTC time>-<pid>-<random>.parquet   PREDICTION_SCHEMA
    labels/date=YYYY-MM-DD/part-<UTC time>-<pid>-<random>.parquet        LABEL_SCHEMA
    generations/date=YYYY-MM-DD/part-<UTC time>-<pid>-<random>.parquet   GENERATION_SCHEMA (POST /generate)

The ``date=`` folders are Hive partitions (pyarrow, Spark, DuckDB and Athena read them as a
column), taken from each row's own UTC timestamp, so a reader of a time window opens only the
days it needs. Rows are buffered in memory and written in batches: when ``flush_rows`` rows are
waiting, every ``flush_seconds`` (a background thread), and on ``close()``. A local file is
written under a dot-name and renamed into place, so readers (which skip dot files) never see a
half-written part; an object store's put is atomic by itself. A failed write keeps the rows in
the buffer for the next try: a row leaves memory only once it is on storage. Several writers
(the worker processes of one server, replicas on one bucket) share a URI: each writes only its
own rows, and a part's name carries its writer's process id beside a random suffix, so two
writers' parts never take the same name.

The Parquet files are for readers (the monitor); the server itself does not read them back. What
it knows of the requests it answered, for ``/feedback``, is ``ServedRequests``: the ids of the
newest ``serving.feedback_window_requests`` requests, held in memory (see its docstring); the
worker processes of one server share ``SharedServedRequests`` instead (the same checks, in a SQLite
file of the server's run folder), so feedback finds an id whichever worker answered it.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger("serving.log")

PREDICTIONS = "predictions"
LABELS = "labels"
GENERATIONS = "generations"


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
    generations = pa.schema(
        [
            ("request_id", pa.string()),  # one id per HTTP request
            ("item", pa.int32()),  # position of the prompt in the request (0 for a single prompt)
            ("ts", ts),  # when the server received the request (UTC)
            ("prompt", pa.string()),
            ("output", pa.string()),  # the generated text (cut before a matched stop text)
            ("tokens_in", pa.int32()),  # prompt tokens
            (
                "tokens_out",
                pa.int32(),
            ),  # generated tokens (a matched stop sequence included, the end token not)
            (
                "finish_reason",
                pa.string(),
            ),  # eos | stop | length | choice (answered from the request's choices)
            ("latency_ms", pa.float64()),  # request received -> result ready, in the server (ms)
            ("ttft_ms", pa.float64()),  # request received -> first new token (queue wait + prefill) (ms)
            ("ms_per_token", pa.float64()),  # mean decoding step after the first token, in its batch (ms)
            ("model_version", pa.string()),  # the generator's version
        ]
    )
    return {PREDICTIONS: predictions, LABELS: labels, GENERATIONS: generations}


def schema(kind: str):
    """The pyarrow schema of ``kind`` (``predictions``, ``labels`` or ``generations``)."""
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
        name = f"part-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
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


class UnknownRequest(LookupError):
    """Feedback for a request id (or an item of it) that ``ServedRequests`` does not hold."""


class ConflictingLabel(ValueError):
    """Feedback whose label contradicts the label already given to that request id and item."""


class LabelItem(Protocol):
    """One label for one text of one answered request (serving.validation.Feedback)."""

    request_id: str
    item: int
    label: str


def sort_labels(
    labels: Sequence[LabelItem],
    texts_of: Callable[[str], int | None],
    label_of: Callable[[str, int], str | None],
    newest: str,
) -> tuple[dict[tuple[str, int], LabelItem], int]:
    """The checks of /feedback, for either store of served ids: ``(new labels by (id, item), how
    many repeat a label already given)``. ``texts_of(id)``: the texts of a held request (None =
    not held); ``label_of(id, item)``: the label it was given (None = none); ``newest`` names the
    window in the 404 message. Raises UnknownRequest (an id not held, an item past its texts) or
    ConflictingLabel (a different label, already or earlier in this batch)."""
    new: dict[tuple[str, int], LabelItem] = {}
    repeats = 0
    for f in labels:
        texts = texts_of(f.request_id)
        if texts is None:
            raise UnknownRequest(
                f"unknown request id {f.request_id!r}: not among the newest {newest} answered "
                "(never served here, or older)"
            )
        if f.item >= texts:
            raise UnknownRequest(f"request {f.request_id!r} had {texts} text(s); there is no item {f.item}")
        key = (f.request_id, f.item)
        before = new[key].label if key in new else label_of(f.request_id, f.item)
        if before is None:
            new[key] = f
        elif before == f.label:
            repeats += 1
        else:
            when = "earlier in this batch" if key in new else "already"
            raise ConflictingLabel(
                f"request {f.request_id!r} item {f.item} is labelled {before!r} {when}, not {f.label!r}"
            )
    return new, repeats


class ServedRequests:
    """The ids of the newest ``capacity`` requests this process answered, and the labels given to them.

    ``add(request_id, texts)`` is called once a request is answered (its rows are in the log
    buffer). ``accept(labels, write)`` checks a batch of feedback against what is held: every label
    must name an id held here and an item below that request's text count, else UnknownRequest
    (404); a label that differs from one already given to that id and item, or from another in the
    same batch, is a ConflictingLabel (409). A label equal to the one given before is a repeat: it
    is accepted and not written again. The batch is all or nothing: on an error nothing is
    written or remembered; otherwise ``write`` gets the new labels, and only once it has returned
    are they remembered (a failed write can be retried).

    Bound: at most ``capacity`` ids (each with at most its text count of labels) are held, in
    memory only (about 250 bytes per id: some 25 MB at the default 100,000): when a new request
    pushes the count over, the oldest id is forgotten with its labels. Feedback for an id older than the newest ``capacity`` requests, like feedback for an
    id never served, or served by another replica or before a restart, gets 404: the server
    cannot tell these apart, and the message says so (the worker processes of one server share
    ``SharedServedRequests`` instead, so between them an id is found whichever answered it). Any id answered by this process among its
    newest ``capacity`` requests is always found. An id a client reuses (``X-Request-ID``) counts
    as its newest use, with the larger text count; the labels it had are kept. Thread-safe.
    """

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity!r}")
        self.capacity = capacity
        # request id -> [texts in the request, {item: label} or None until the first label]
        self._held: OrderedDict[str, list[Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.forgotten = 0  # ids dropped for the bound, over this process's lifetime

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def __contains__(self, request_id: object) -> bool:
        with self._lock:
            return request_id in self._held

    def add(self, request_id: str, texts: int) -> None:
        """Remember an answered request of ``texts`` texts (items 0 to texts - 1)."""
        self.add_many([(request_id, texts)])

    def add_many(self, requests: Sequence[tuple[str, int]]) -> None:
        """``add`` each ``(request_id, texts)``, in order."""
        with self._lock:
            for request_id, texts in requests:
                entry = self._held.pop(request_id, None)
                if entry is not None:
                    entry[0] = max(entry[0], texts)
                self._held[request_id] = entry or [texts, None]
                while len(self._held) > self.capacity:
                    self._held.popitem(last=False)
                    self.forgotten += 1

    def label(self, request_id: str, item: int = 0) -> str | None:
        """The label given to that text, None if none was (or the id is not held)."""
        with self._lock:
            entry = self._held.get(request_id)
            return None if entry is None or entry[1] is None else entry[1].get(item)

    def accept(self, labels: Sequence[LabelItem], write: Callable[[list[LabelItem]], None]) -> int:
        """Check ``labels`` (see the class docstring), ``write`` the new ones, remember them;
        return how many were repeats (accepted, not written)."""
        with self._lock:

            def texts_of(request_id: str) -> int | None:
                entry = self._held.get(request_id)
                return None if entry is None else entry[0]

            def label_of(request_id: str, item: int) -> str | None:
                return (self._held[request_id][1] or {}).get(item)

            new, repeats = sort_labels(
                labels, texts_of, label_of, f"{self.capacity} requests this server process"
            )
            if new:
                write(list(new.values()))
            for (request_id, item), f in new.items():
                entry = self._held[request_id]
                if entry[1] is None:
                    entry[1] = {}
                entry[1][item] = f.label
            return repeats


ID_CHUNK = 500  # ids per IN (...) query: well under SQLite's limit on bound parameters


class SharedServedRequests:
    """``ServedRequests`` shared by the worker processes of one server: the same contract (add,
    accept, label, len, in; the bound, the 404/409 checks, all-or-nothing batches), held in a SQLite
    file (``path``, in the server's run folder, removed when the server stops) that every worker
    opens, so feedback finds a request id whichever worker answered it and a label given through
    one worker is a repeat, or a conflict, through another.

    Each call is one SQLite transaction taken with ``BEGIN IMMEDIATE`` (the write lock): workers
    never interleave a check and its write. The workers queue for it on an ``flock`` of
    ``path + ".lock"`` first: the kernel hands the lock over the moment it is free, where SQLite's
    own busy handler would sleep 1 to 100 ms in the event loop of a worker that found the file
    locked (measured: two workers then served no faster than one). ``accept`` calls ``write`` (the calling worker's labels
    log) inside that transaction and commits only once it has returned, so a failed write leaves no
    trace in any worker. The file is a cache of what this run answered, not a record: it is not
    synced to disk (a crash loses it, as a restart loses ``ServedRequests``), and ``forgotten``
    counts the ids this process dropped for the bound. About 20-60 us per ``add`` on local disk.
    """

    def __init__(self, path: str | os.PathLike, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity!r}")
        self.capacity = capacity
        self.path = str(path)
        self.forgotten = 0
        self._lock = threading.Lock()  # one connection per process, used from any thread under this lock
        self._file_lock = open(self.path + ".lock", "a+b")  # noqa: SIM115 (held for the store's life)
        # isolation_level None: no implicit transactions; each method opens its own.
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS served (id TEXT PRIMARY KEY, texts INTEGER NOT NULL, "
                "seq INTEGER NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS served_seq ON served (seq)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS labels (id TEXT NOT NULL, item INTEGER NOT NULL, "
                "label TEXT NOT NULL, PRIMARY KEY (id, item)) WITHOUT ROWID"
            )
            # One row: the last sequence number given and the ids held (COUNT(*) would scan).
            db.execute("CREATE TABLE IF NOT EXISTS meta (seq INTEGER NOT NULL, held INTEGER NOT NULL)")
            if db.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0:
                db.execute("INSERT INTO meta VALUES (0, 0)")

    @contextlib.contextmanager
    def _transaction(self):
        with self._lock:
            fcntl.flock(self._file_lock, fcntl.LOCK_EX)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                fcntl.flock(self._file_lock, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._file_lock.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT held FROM meta").fetchone()[0])

    def __contains__(self, request_id: object) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM served WHERE id = ?", (request_id,)).fetchone() is not None

    def add(self, request_id: str, texts: int) -> None:
        """Remember an answered request of ``texts`` texts (items 0 to texts - 1)."""
        self.add_many([(request_id, texts)])

    def add_many(self, requests: Sequence[tuple[str, int]]) -> None:
        """``add`` each ``(request_id, texts)``, in order, in one transaction of a few statements
        whatever the count (the server adds the requests answered together so: one per
        micro-batch)."""
        if not requests:
            return
        with self._transaction() as db:
            seq, held = db.execute("SELECT seq, held FROM meta").fetchone()
            ids = list(dict.fromkeys(request_id for request_id, _ in requests))
            known = 0
            for i in range(0, len(ids), ID_CHUNK):
                chunk = ids[i : i + ID_CHUNK]
                marks = ",".join("?" * len(chunk))
                known += db.execute(f"SELECT COUNT(*) FROM served WHERE id IN ({marks})", chunk).fetchone()[0]
            # A reused id: its newest use, the larger text count, its labels kept.
            db.executemany(
                "INSERT INTO served VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "texts = max(texts, excluded.texts), seq = excluded.seq",
                [(request_id, texts, seq + k) for k, (request_id, texts) in enumerate(requests, 1)],
            )
            seq += len(requests)
            held += len(ids) - known
            if held > self.capacity:  # the oldest go, with their labels
                excess = held - self.capacity
                oldest = db.execute("SELECT id FROM served ORDER BY seq LIMIT ?", (excess,)).fetchall()
                db.executemany("DELETE FROM labels WHERE id = ?", oldest)
                db.executemany("DELETE FROM served WHERE id = ?", oldest)
                held -= excess
                self.forgotten += excess
            db.execute("UPDATE meta SET seq = ?, held = ?", (seq, held))

    def label(self, request_id: str, item: int = 0) -> str | None:
        """The label given to that text, None if none was (or the id is not held)."""
        with self._lock:
            row = self._db.execute(
                "SELECT label FROM labels WHERE id = ? AND item = ?", (request_id, item)
            ).fetchone()
        return None if row is None else row[0]

    def accept(self, labels: Sequence[LabelItem], write: Callable[[list[LabelItem]], None]) -> int:
        """As ``ServedRequests.accept``, across every worker of the server."""
        with self._transaction() as db:

            def texts_of(request_id: str) -> int | None:
                row = db.execute("SELECT texts FROM served WHERE id = ?", (request_id,)).fetchone()
                return None if row is None else row[0]

            def label_of(request_id: str, item: int) -> str | None:
                row = db.execute(
                    "SELECT label FROM labels WHERE id = ? AND item = ?", (request_id, item)
                ).fetchone()
                return None if row is None else row[0]

            new, repeats = sort_labels(labels, texts_of, label_of, f"{self.capacity} requests this server")
            if new:
                write(list(new.values()))  # inside the transaction: committed only once written
                db.executemany(
                    "INSERT INTO labels VALUES (?, ?, ?)", [(r, i, f.label) for (r, i), f in new.items()]
                )
            return repeats


class PredictionLog:
    """The three logs of one server: predictions, late labels and generations, under one URI; and
    the ids of the newest ``feedback_window_requests`` requests answered (``served``), for the
    label checks."""

    def __init__(
        self,
        uri: str,
        flush_rows: int = 2000,
        flush_seconds: float = 5.0,
        background: bool = True,
        feedback_window_requests: int = 100_000,
        served: ServedRequests | SharedServedRequests | None = None,
    ):
        """``served``: the ids /feedback checks against (default: this process's own
        ``ServedRequests(feedback_window_requests)``; the worker processes of one server pass one
        ``SharedServedRequests``)."""
        self.uri = str(uri).rstrip("/")
        self.predictions = ParquetLog(self.uri, PREDICTIONS, flush_rows, flush_seconds, background)
        self.labels = ParquetLog(self.uri, LABELS, flush_rows, flush_seconds, background)
        self.generations = ParquetLog(self.uri, GENERATIONS, flush_rows, flush_seconds, background)
        self.served = served if served is not None else ServedRequests(feedback_window_requests)

    def flush(self) -> None:
        self.predictions.flush()
        self.labels.flush()
        self.generations.flush()

    def close(self) -> None:
        """Write everything still buffered (every log, even if one fails)."""
        errors = []
        for part in (self.predictions, self.labels, self.generations):
            try:
                part.close()
            except Exception as exc:
                errors.append(exc)
        if isinstance(self.served, SharedServedRequests):
            self.served.close()
        if errors:
            raise errors[0]


def now_utc(clock: Callable[[], float] = time.time) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)
