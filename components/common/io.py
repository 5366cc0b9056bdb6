"""File I/O shared by every stage: fsspec URIs, JSON/JSONL, and atomic outputs.

Atomicity (DESIGN rule 5): a stage writes into a temporary sibling folder and renames it into
place only when everything succeeded, so DVC never caches, and a later stage never reads, a
half-written output. Remote outputs (s3://, gs://) are built in a local temporary folder and
uploaded at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import fsspec


def is_remote(uri: str | os.PathLike) -> bool:
    """True for URIs with a scheme other than file:// (s3://, gs://, memory:// ...)."""
    s = str(uri)
    return "://" in s and not s.startswith("file://")


def open_uri(uri: str | os.PathLike, mode: str = "rb", **kwargs: Any):
    """Open a local path or fsspec URI; compression is inferred from the suffix (.gz, .bz2)."""
    kwargs.setdefault("compression", "infer")
    return fsspec.open(str(uri), mode, **kwargs)


def list_files(uri: str | os.PathLike, suffixes: tuple[str, ...] = ()) -> list[str]:
    """Files under ``uri`` (itself if it is a file), sorted, optionally filtered by suffix.

    Remote URIs keep their scheme in the result so they can be passed to ``open_uri``.
    """
    s = str(uri)
    fs, root = fsspec.core.url_to_fs(s)
    if fs.isfile(root):
        paths = [root]
    else:
        paths = sorted(p for p in fs.find(root) if not Path(p).name.startswith((".", "_")))
    if suffixes:
        paths = [p for p in paths if p.endswith(suffixes)]
    if is_remote(s):
        protocol = s.split("://", 1)[0]
        paths = [p if "://" in p else f"{protocol}://{p}" for p in paths]
    return paths


def read_json(path: str | os.PathLike) -> Any:
    with open_uri(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def dumps_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys) so identical results give identical bytes."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temp file + rename) for local paths."""
    write_text(path, dumps_json(obj))


def write_text(path: str | os.PathLike, text: str) -> None:
    if is_remote(path):
        with open_uri(path, "wt", encoding="utf-8", compression=None) as f:
            f.write(text)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file (or of every *.jsonl[.gz] file under a folder), in order."""
    for file in list_files(path, (".jsonl", ".jsonl.gz", ".json")):
        with open_uri(file, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSONL (plain local path, inside an atomic output folder). Returns count."""
    n = 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(jsonl_line(record))
            n += 1
    return n


@contextlib.contextmanager
def atomic_output_dir(output: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh local folder; on success it replaces ``output`` in one rename.

    On error the temporary folder is removed and ``output`` is left as it was. For a remote
    ``output`` the folder is uploaded after the work succeeded (object stores have no rename).
    """
    if is_remote(output):
        with tempfile.TemporaryDirectory(prefix="stage-out-") as tmp:
            yield Path(tmp)
            fs, root = fsspec.core.url_to_fs(str(output))
            if fs.exists(root):
                fs.rm(root, recursive=True)
            fs.put(tmp.rstrip("/") + "/", root, recursive=True)
        return
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Rename the old output aside first so the swap leaves either the old or the new folder.
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(output, old)
    os.replace(tmp, output)
    os.chmod(output, 0o755)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
