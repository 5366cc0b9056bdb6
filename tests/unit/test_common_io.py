"""Atomic outputs, deterministic JSON and fsspec listing: the I/O every stage relies on."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from components.common.io import atomic_output_dir, list_files, read_jsonl, write_json
from components.common.metrics import flatten, write_metrics


def test_atomic_output_dir_replaces_output_only_on_success(tmp_path: Path):
    out = tmp_path / "stage"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"

    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("half-written")
        raise RuntimeError("killed mid-way")
    # The failed run left the previous output untouched and no temporary folder behind.
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]

    with atomic_output_dir(out) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_atomic_output_dir_to_a_remote_uri():
    import fsspec

    with atomic_output_dir("memory://bucket/stage") as tmp:
        (tmp / "x.json").write_text("{}")
    fs = fsspec.filesystem("memory")
    assert fs.cat("/bucket/stage/x.json") == b"{}"


def test_write_json_is_deterministic(tmp_path: Path):
    write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_read_jsonl_reads_folders_and_gzip_in_order(tmp_path: Path):
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": 2}) + "\n\n")
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": 1}) + "\n")
    (tmp_path / ".hidden.jsonl").write_text(json.dumps({"id": 3}) + "\n")
    assert [r["id"] for r in read_jsonl(tmp_path)] == [1, 2]
    assert [Path(p).name for p in list_files(tmp_path, (".jsonl",))] == ["b.jsonl"]


def test_metrics_are_rounded_and_flattened(tmp_path: Path):
    cleaned = write_metrics(tmp_path, {"loss": 1 / 3, "nan": float("nan"), "split": {"train": 3}})
    assert cleaned == {"loss": 0.333333, "nan": None, "split": {"train": 3}}
    assert json.loads((tmp_path / "metrics.json").read_text()) == cleaned
    assert flatten({"a": {"b": 2, "c": True, "d": "text"}}) == {"a.b": 2.0, "a.c": 1.0}
