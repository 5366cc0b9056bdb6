"""Dataset versions: the content hashes that tie a model to the exact raw data it came from.

A file's version is the MD5 of its bytes, the same hash DVC records for it in dvc.lock and uses
as its address in the DVC cache and remote, so a version in a Kubeflow run's metadata or in a
release bundle can be looked up with DVC (``dvc get``/``dvc pull`` of that content). A dataset's
version is the MD5 of its files' sorted MD5s: content only, so the same data gives the same version
wherever it lives (a local path under `dvc repro`, s3:// on a cluster). File names are recorded
as data-lake URIs or as paths relative to the project (the working folder both orchestrators run
stages from), never as absolute paths: the same data in two clones gives the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from components.common.io import is_remote, list_files, open_uri


def file_md5(uri: str) -> str:
    """MD5 of a file's bytes (local path or fsspec URI; never decompressed)."""
    digest = hashlib.md5()
    with open_uri(uri, "rb", compression=None) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def portable(uri: str | os.PathLike) -> str:
    """A URI as it may be recorded: remote URIs as they are; local paths relative to the working
    folder (the project root under `dvc repro`, `kfp.local` and a pod alike), with ``/``."""
    if is_remote(uri):
        return str(uri)
    local = str(uri).removeprefix("file://")
    return os.path.relpath(os.path.abspath(local)).replace(os.sep, "/")


def dataset_version(uris: Iterable[str]) -> dict[str, object]:
    """``{"version": md5, "files": {uri: md5}}`` over every file under the given URIs (recorded
    with ``portable`` names)."""
    files = {portable(path): file_md5(path) for uri in uris for path in list_files(uri)}
    listing = "".join(f"{md5}\n" for md5 in sorted(files.values()))
    return {"version": hashlib.md5(listing.encode()).hexdigest(), "files": dict(sorted(files.items()))}
