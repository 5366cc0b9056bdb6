"""The S3 data lake on a local S3 server (moto): DVC push/pull round trip and a stage that reads
from and writes to s3:// URIs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import fsspec

from components.clean.core import run as clean_run
from components.clean.params import Params as CleanParams
from components.common.io import read_jsonl
from tests.pipeline.conftest import ROOT, dvc


def test_dvc_push_wipe_pull_gives_identical_hashes(tmp_path: Path, s3_server):
    project = tmp_path / "proj"
    (project / "data").mkdir(parents=True)
    for i in range(3):
        (project / "data" / f"part-{i}.jsonl").write_text(json.dumps({"id": i, "text": f"doc {i}"}) + "\n")
    dvc(project, "init", "--no-scm", "-q")
    dvc(project, "remote", "add", "-d", "lake", "s3://lake/dvc")
    dvc(project, "remote", "modify", "lake", "endpointurl", s3_server["AWS_ENDPOINT_URL"])
    dvc(project, "add", "data")
    before = (project / "data.dvc").read_text()
    originals = {p.name: p.read_bytes() for p in (project / "data").iterdir()}
    dvc(project, "push")
    assert fsspec.filesystem("s3").find("lake/dvc"), "nothing reached the S3 remote"

    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data")
    dvc(project, "pull")
    assert {p.name: p.read_bytes() for p in (project / "data").iterdir()} == originals
    assert (project / "data.dvc").read_text() == before
    status = dvc(project, "status", "--cloud")
    assert "in sync" in status.stdout


def test_clean_reads_and_writes_s3(tmp_path: Path, s3_server):
    # Real articles (so the quality rules keep them), each twice: the copies must go as duplicates.
    with open(ROOT / "data" / "raw" / "news_articles.csv", newline="", encoding="utf-8") as f:
        texts = [row["text"] for row, _ in zip(csv.DictReader(f), range(8), strict=False)]
    records = [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)]
    records += [{"id": f"e{i}", "text": t} for i, t in enumerate(texts)]
    with fsspec.open("s3://lake/raw/corpus.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)

    params = CleanParams()
    metrics = clean_run("s3://lake/raw/corpus.jsonl", "s3://lake/clean", params)
    local = tmp_path / "clean"
    clean_run("s3://lake/raw/corpus.jsonl", str(local), params)

    fs = fsspec.filesystem("s3")
    assert fs.exists("lake/clean/report.json")
    kept = [r["id"] for r in read_jsonl("s3://lake/clean/documents")]
    assert kept and all(i.startswith("d") for i in kept)  # one of each pair, the smallest id
    assert metrics["kept"] == len(kept)
    for doc in (local / "documents").iterdir():
        assert fs.cat(f"lake/clean/documents/{doc.name}") == doc.read_bytes()
