"""`dvc repro` on the DAG: outputs, no-op reruns, targeted reruns, bad params refused up front."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.common.params import STAGES
from tests.pipeline.conftest import ROOT, dvc, project_env

pytestmark = pytest.mark.slow


def ran_stages(output: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in output]


def test_repro_writes_every_stage_metrics(dvc_project: Path):
    for stage in STAGES:
        metrics = json.loads((dvc_project / "outputs" / stage / "metrics.json").read_text())
        assert metrics, stage
    report = json.loads((dvc_project / "outputs/clean/report.json").read_text())
    dropped = sum(report["dropped"].values())
    rejected = sum(report["rejected"].values())
    assert report["input"] == report["kept"] + dropped + rejected
    monitor = json.loads((dvc_project / "outputs/monitor/metrics.json").read_text())
    assert monitor["batches"]["plots"]["drift_detected"] is True
    assert monitor["batches"]["reviews"]["drift_detected"] is False


def test_second_repro_does_nothing(dvc_project: Path):
    result = dvc(dvc_project, "repro")
    assert ran_stages(result.stdout) == []
    status = dvc(dvc_project, "status")
    assert "changed" not in status.stdout


def test_changing_a_finetune_param_reruns_only_finetune_and_downstream(dvc_project: Path):
    params_file = dvc_project / "params.yaml"
    original = params_file.read_text()
    raw = yaml.safe_load(original)
    raw["finetune"]["seed"] = raw["finetune"].get("seed", 0) + 1
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        result = dvc(dvc_project, "repro")
        assert ran_stages(result.stdout) == [
            "finetune",
            "compress",
            "evaluate",
            "select",
            "deploy",
            "monitor",
            "report",
        ]
    finally:
        params_file.write_text(original)
        dvc(dvc_project, "repro")


def test_bad_params_are_refused_before_any_stage_runs(tmp_path: Path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["finetune"]["learning_rat"] = 0.1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "-m", "components.common.check_params", str(bad)],
        cwd=ROOT,
        env=project_env(),
        text=True,
        capture_output=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: finetune.learning_rat: unknown key (known keys: "
        + result.stderr.split("(known keys: ", 1)[1].strip()
    ]
    # The first stage of the DAG refuses the same file before doing any work.
    out = tmp_path / "ingest-out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "components.ingest",
            "--news",
            str(ROOT / "data/raw/news_articles.csv"),
            "--reviews",
            str(ROOT / "data/raw/rotten_tomatoes.csv.bz2"),
            "--output",
            str(out),
            "--params",
            str(bad),
        ],
        cwd=ROOT,
        env=project_env(),
        text=True,
        capture_output=True,
    )
    assert result.returncode == 2
    assert "finetune.learning_rat: unknown key" in result.stderr
    assert not out.exists()


def test_lineage_files_do_not_depend_on_where_the_project_lives(dvc_project: Path, tmp_path: Path):
    """The project cloned to two folders: ingest's dataset.json and deploy's release.json, made
    anew in each, are byte-identical (no absolute path of either machine in them)."""
    dvc(dvc_project, "repro")  # outputs of its own params (other tests change and restore them)
    produced = {}
    for name in ("clone-a", "nested/clone-b"):
        clone = tmp_path / name
        shutil.copytree(dvc_project, clone, symlinks=True)
        for stage in ("ingest", "deploy"):
            result = dvc(clone, "repro", "--force", "--single-item", stage, check=False)
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        produced[name] = [
            (clone / "outputs" / f).read_bytes() for f in ("ingest/dataset.json", "deploy/release.json")
        ]
    assert produced["clone-a"] == produced["nested/clone-b"]
    dataset = json.loads(produced["clone-a"][0])
    assert sorted(dataset["files"]) == ["data/raw/news_articles.csv", "data/raw/rotten_tomatoes.csv.bz2"]
    assert str(tmp_path) not in produced["clone-a"][1].decode()


def test_a_bad_parameter_under_plain_dvc_repro_leaves_every_output_intact(dvc_project: Path):
    """`dvc repro` itself (not `make run`, which validates first) with `finetune.lr: fast`: the
    stage refuses the value and DVC has deleted nothing (outputs are persist: true)."""
    dvc(dvc_project, "repro")
    outputs = dvc_project / "outputs"
    before = {str(p): p.read_bytes() for p in outputs.rglob("*") if p.is_file()}
    assert any(p.endswith("finetune/metrics.json") for p in before)
    params_file = dvc_project / "params.yaml"
    original = params_file.read_text()
    raw = yaml.safe_load(original)
    raw["finetune"]["lr"] = "fast"
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        result = dvc(dvc_project, "repro", check=False)
        assert result.returncode != 0
        assert "finetune.lr: expected float, got str 'fast'" in result.stdout + result.stderr
        after = {str(p): p.read_bytes() for p in outputs.rglob("*") if p.is_file()}
        assert after.keys() == before.keys()
        assert [p for p in before if after[p] != before[p]] == []
    finally:
        params_file.write_text(original)
    assert ran_stages(dvc(dvc_project, "repro").stdout) == []  # nothing to redo: dvc.lock still holds
