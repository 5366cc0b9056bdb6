"""What clean reads: the input's JSONL shards, the files it cannot read, and the lines of one shard.

clean reads JSONL only (``*.jsonl``, ``*.jsonl.gz``); the ingest stage turns CSV, Parquet and plain
text into JSONL. clean does not import ingest's readers (a stage never imports another stage), so a
single CSV or Parquet file is refused with a one-line message saying so, and an unsupported file
inside an input folder is an error (or, with ``clean.on_bad_input: quarantine``, listed in the
report and skipped).

Reading a shard (``read_lines``) never raises on damaged data: it yields every non-blank line it can
read whole, and, if the file stops being readable (a truncated or corrupt gzip, a read error), one
final ``ReadFailure`` saying where. How the unreadable rest is counted, honestly: the bytes past a
truncation do not exist and a damaged deflate stream cannot be decoded past the damage (the gzip
trailer that would give the length is missing or untrusted), so the number of records lost cannot be
known. The rest therefore counts as ONE rejected record (``unreadable``) at ``file:line``, ``line``
being the first line not read whole (its decoded bytes, if any, are part of that record), and the
failure carries the facts to judge the loss by: whole lines read, bytes decoded, the partial line's
bytes, the file's size on disk and the offset on disk where decoding stopped. A gzip whose checksum
fails at its end was decoded whole, but damaged: its lines were yielded (each still goes through the
parse checks), and the failure is reported all the same.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import fsspec

from components.common.entry import InputError
from components.common.io import is_remote, list_files

INPUT_SUFFIXES = (".jsonl", ".jsonl.gz")
# What ingest converts into JSONL (named in the refusal of a file clean cannot read).
INGEST_FORMATS = {".csv": "CSV", ".parquet": "Parquet", ".txt": "plain text"}
READ_CHUNK = 1 << 20  # decoded bytes asked for per read (bytes)
UNSUPPORTED = "unsupported_format"  # the reason of a skipped file in report.json


class NoInputFiles(InputError, FileNotFoundError):
    """No JSONL shard at the input (an InputError for the command line, a FileNotFoundError too)."""


@dataclass(frozen=True)
class Inputs:
    """The shards to read (full paths or URIs), the prefix locations drop, the files skipped."""

    files: list[str]
    prefix: str
    skipped: list[str]  # unsupported files under an input folder (full paths or URIs)

    def relative(self, path: str) -> str:
        return path[len(self.prefix) :] if path.startswith(self.prefix) else path.rsplit("/", 1)[-1]


def supported(path: str) -> bool:
    return path.endswith(INPUT_SUFFIXES)


def refusal(path: str) -> str:
    """The one-line refusal of a file clean cannot read (its format named when ingest reads it)."""
    name = path.rsplit("/", 1)[-1]
    base = name[: -len(".gz")] if name.endswith(".gz") else name.removesuffix(".bz2")
    fmt = next((label for suffix, label in INGEST_FORMATS.items() if base.endswith(suffix)), None)
    what = f"a {fmt} file" if fmt else "not a .jsonl or .jsonl.gz file"
    return (
        f"clean: cannot read {path}: {what}; clean reads JSONL (.jsonl, .jsonl.gz) only: "
        "convert CSV, Parquet or TXT into JSONL with the ingest stage"
    )


def discover(uri: str) -> Inputs:
    """The JSONL shards of ``uri`` (a file or a folder), sorted, and the unsupported files beside them.

    Locations name a file relative to the input folder (or by its name alone for a file input), so
    reports do not depend on where the input lies. Hidden and ``_`` files are not input (as in
    ``list_files``). Raises InputError for a single file clean cannot read, NoInputFiles when there
    is no shard at all.
    """
    fs, root = fsspec.core.url_to_fs(str(uri))
    if not fs.exists(root):
        raise NoInputFiles(f"clean: no input at {uri}")
    everything = list_files(uri)
    if fs.isfile(root):
        if not supported(everything[0]):
            raise InputError(refusal(str(uri)))
        return Inputs(everything, everything[0].rsplit("/", 1)[0] + "/", [])
    protocol = str(uri).split("://", 1)[0] + "://" if is_remote(uri) else ""
    prefix = protocol + root.rstrip("/") + "/"
    files = [p for p in everything if supported(p)]
    skipped = [p for p in everything if not supported(p)]
    if not files:
        found = f" (only {_names(skipped, prefix)})" if skipped else ""
        raise NoInputFiles(f"clean: no {'/'.join(INPUT_SUFFIXES)} files at {uri}{found}")
    return Inputs(files, prefix, skipped)


def unsupported_message(inputs: Inputs) -> str:
    """The one-line error for unsupported files in an input folder (``on_bad_input: error``)."""
    first = inputs.skipped[0]
    others = len(inputs.skipped) - 1
    more = f" (and {others} more: {_names(inputs.skipped[1:], inputs.prefix)})" if others else ""
    return (
        f"{refusal(first)}{more}; or set clean.on_bad_input: quarantine to skip such files "
        "(they are listed in the report)"
    )


def _names(paths: list[str], prefix: str, limit: int = 5) -> str:
    names = [p[len(prefix) :] if p.startswith(prefix) else p for p in paths[:limit]]
    return ", ".join(names) + (f", ... {len(paths) - limit} more" if len(paths) > limit else "")


@dataclass(frozen=True)
class ReadFailure:
    """Where a shard stopped being readable (see the module docstring for how it is counted)."""

    line: int  # the first line not read whole (1-based; blank lines count)
    error: str  # "<exception type>: <message>"
    lines_read: int  # whole lines read before it (lines, blank ones included)
    bytes_read: int  # decoded bytes read before it, the partial line included (bytes)
    partial_line_bytes: int  # decoded bytes of the cut line (bytes)
    file_bytes: int | None  # size of the file on disk (bytes; None where unknown)
    stopped_at_byte: int | None  # offset on disk where decoding stopped (bytes; up to one read
    # buffer past the damage; equal to file_bytes for a truncated file)

    def as_dict(self) -> dict:
        """The fields of its rejected row (the line is in the row's location ``file:line``)."""
        out = asdict(self)
        del out["line"]
        return out


def read_lines(path: str) -> Iterator[tuple[int, bytes] | ReadFailure]:
    """``(line_no, raw)`` for every non-blank line of the shard ``path`` (``\\r\\n`` stripped, bytes:
    an invalid UTF-8 line is rejected on its own), then a ``ReadFailure`` if it stopped being
    readable. Blank lines are layout, not records: they are numbered but not yielded."""
    fs, fpath = fsspec.core.url_to_fs(str(path))
    try:
        size = int(fs.size(fpath))
    except Exception:  # noqa: BLE001 - the size is extra information, not needed to read
        size = None
    line_no = decoded = 0
    parts: list[bytes] = []  # the pieces of the line being read
    try:
        raw = fs.open(fpath, "rb")
    except OSError as exc:
        yield ReadFailure(1, f"{type(exc).__name__}: {exc}"[:500], 0, 0, 0, size, 0)
        return
    with raw:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if fpath.endswith(".gz") else raw
        # read1 on gzip: what was decoded before a failure is returned before the next call
        # raises, so every whole line before the damage is yielded.
        read = stream.read1 if hasattr(stream, "read1") else stream.read
        try:
            while chunk := read(READ_CHUNK):
                decoded += len(chunk)
                pieces = chunk.split(b"\n")
                if len(pieces) == 1:
                    parts.append(chunk)
                    continue
                if parts:
                    pieces[0] = b"".join([*parts, pieces[0]])
                parts = [pieces[-1]] if pieces[-1] else []
                for line in pieces[:-1]:
                    line_no += 1
                    if line.strip():
                        yield line_no, line.rstrip(b"\r")
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            try:
                offset = int(raw.tell())
            except Exception:  # noqa: BLE001 - unseekable: the size is the best we know
                offset = size
            yield ReadFailure(
                line=line_no + 1,
                error=f"{type(exc).__name__}: {exc}"[:500],
                lines_read=line_no,
                bytes_read=decoded,
                partial_line_bytes=sum(map(len, parts)),
                file_bytes=size,
                stopped_at_byte=offset,
            )
            return
    if parts:  # a last line without its newline is a line
        line = b"".join(parts)
        if line.strip():
            yield line_no + 1, line.rstrip(b"\r")
