"""Readers of raw document files: JSONL, CSV, Parquet and plain text, optionally .gz/.bz2.

Every reader yields ``(key, fields)`` for good rows and counts bad rows by a stable reason in a
``Counter`` instead of raising, so one malformed line never stops an ingest:

- ``invalid_utf8``: bytes that are not UTF-8;
- ``invalid_json``: a JSONL line that does not parse; ``not_an_object``: it parses to a non-object;
- ``bad_row``: a CSV row with more or fewer fields than the header;
- ``missing_text`` / ``non_string_text`` / ``empty_text``: the text column is absent (or null), is
  not a string, or holds only whitespace.

``key`` is the 1-based line (JSONL) or data-row (CSV, Parquet) number, or 1 for a text file (one
document per file), so ids built from it are stable across runs and machines.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import fsspec

from components.common.io import list_files, open_uri

FORMATS = (".jsonl", ".ndjson", ".csv", ".parquet", ".txt")
COMPRESSIONS = (".gz", ".bz2")

Row = tuple[int, dict[str, Any]]


def split_suffix(name: str) -> tuple[str, str] | None:
    """``"a/b.jsonl.gz"`` -> ``("a/b", ".jsonl")``; None when the format is not supported."""
    base = name
    for comp in COMPRESSIONS:
        if base.endswith(comp):
            base = base[: -len(comp)]
            break
    for fmt in FORMATS:
        if base.endswith(fmt) and len(base) > len(fmt):
            return base[: -len(fmt)], fmt
    return None


def discover(uri: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Supported files under ``uri`` as ``(path, source, format)``, plus unsupported file paths.

    ``source`` is the file name without suffixes for a file URI, and the path relative to the folder
    without suffixes for a folder URI (``sub/books`` for ``<uri>/sub/books.jsonl.gz``).
    """
    fs, root = fsspec.core.url_to_fs(uri)
    if fs.isfile(root):
        found = split_suffix(root.rsplit("/", 1)[-1])
        if found is None:
            raise ValueError(f"{uri}: unsupported file type (supported: {', '.join(FORMATS)} [.gz|.bz2])")
        return [(uri, found[0], found[1])], []
    if not fs.exists(root):
        raise FileNotFoundError(f"{uri}: no such file or folder")
    prefix = root.rstrip("/") + "/"
    files, unsupported = [], []
    for path in list_files(uri):
        stripped = fs._strip_protocol(path)
        rel = stripped[len(prefix) :] if stripped.startswith(prefix) else stripped.rsplit("/", 1)[-1]
        found = split_suffix(rel)
        if found is None:
            unsupported.append(path)
        else:
            files.append((path, found[0], found[1]))
    return files, unsupported


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (Parquet and CSV cells may hold dates, decimals, bytes, NaN)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime.date | datetime.datetime | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def text_reason(value: Any) -> str | None:
    """Why a text cell cannot be a document (None when it can)."""
    if value is None:
        return "missing_text"
    if not isinstance(value, str):
        return "non_string_text"
    if not value.strip():
        return "empty_text"
    return None


def _check(rows: Iterator[Row], text_column: str, skipped: Counter) -> Iterator[Row]:
    for key, fields in rows:
        reason = text_reason(fields.get(text_column))
        if reason:
            skipped[reason] += 1
        else:
            yield key, fields


def read_jsonl(path: str, skipped: Counter) -> Iterator[Row]:
    with open_uri(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue  # blank lines are layout, not records
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped["invalid_utf8"] += 1
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                skipped["invalid_json"] += 1
                continue
            if not isinstance(obj, dict):
                skipped["not_an_object"] += 1
                continue
            yield lineno, obj


def _has_surrogate(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def read_csv(path: str, skipped: Counter) -> Iterator[Row]:
    # Decode with surrogateescape so one bad byte costs one row (counted), not the whole file.
    with open_uri(path, "rb") as f:
        data = f.read().decode("utf-8", errors="surrogateescape")
    if data.startswith("\ufeff"):
        data = data[1:]
    # News articles exceed the csv module's default 128 KiB field limit.
    csv.field_size_limit(sys.maxsize)
    reader = csv.DictReader(io.StringIO(data, newline=""))
    for row_no, row in enumerate(reader, start=1):
        if None in row or any(v is None for v in row.values()):
            skipped["bad_row"] += 1
            continue
        if any(_has_surrogate(v) for v in row.values()):
            skipped["invalid_utf8"] += 1
            continue
        yield row_no, dict(row)


def read_parquet(path: str, skipped: Counter) -> Iterator[Row]:
    import pyarrow.parquet as pq

    with open_uri(path, "rb", compression=None) as f:
        table = pq.read_table(f)
    yield from enumerate(table.to_pylist(), start=1)


def read_txt(path: str, skipped: Counter, text_column: str) -> Iterator[Row]:
    with open_uri(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        skipped["invalid_utf8"] += 1
        return
    yield 1, {text_column: text.removeprefix("\ufeff")}


def read_rows(path: str, fmt: str, text_column: str, skipped: Counter) -> Iterator[Row]:
    """Good rows of one file (the text column checked); bad rows counted in ``skipped``."""
    if fmt in (".jsonl", ".ndjson"):
        rows = read_jsonl(path, skipped)
    elif fmt == ".csv":
        rows = read_csv(path, skipped)
    elif fmt == ".parquet":
        rows = read_parquet(path, skipped)
    elif fmt == ".txt":
        rows = read_txt(path, skipped, text_column)
    else:  # pragma: no cover - discover() only returns FORMATS
        raise ValueError(f"unsupported format {fmt}")
    return _check(rows, text_column, skipped)
