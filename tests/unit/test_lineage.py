"""Dataset versions are content hashes that DVC itself would give the same files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from components.common.lineage import dataset_version, file_md5


def test_version_depends_on_content_not_location(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "x.csv").write_text("id,text\n1,hello\n")
    assert dataset_version([str(a)])["version"] == dataset_version([str(b)])["version"]
    (b / "x.csv").write_text("id,text\n1,hellO\n")
    assert dataset_version([str(a)])["version"] != dataset_version([str(b)])["version"]


def test_file_hash_is_the_one_dvc_records(tmp_path: Path):
    data = tmp_path / "raw.csv"
    data.write_bytes(b"id,text\n1,caf\xc3\xa9\n")
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "add", "-q", "raw.csv"], cwd=tmp_path, check=True)
    recorded = yaml.safe_load((tmp_path / "raw.csv.dvc").read_text())["outs"][0]["md5"]
    assert file_md5(str(data)) == recorded
