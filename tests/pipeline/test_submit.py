"""`make kfp-submit`'s checks before it contacts a cluster: host from the environment, params valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.submit import main, plan
from tests.pipeline.conftest import ROOT


def test_submit_refuses_without_a_host():
    with pytest.raises(SystemExit, match="KFP_HOST is not set"):
        plan(ROOT / "params.yaml", "exp", env={})


def test_submit_refuses_bad_params_before_contacting_the_host(tmp_path: Path, monkeypatch, capsys):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["pretrain"]["train_step"] = 3
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    # An address nothing listens on: reaching it would fail differently from the params error.
    monkeypatch.setenv("KFP_HOST", "http://127.0.0.1:9")
    assert main(["--params", str(bad)]) == 2
    assert "pretrain.train_step: unknown key" in capsys.readouterr().err


def test_submission_carries_every_stage_section_and_the_data_uris():
    sub = plan(ROOT / "params.yaml", "exp", env={"KFP_HOST": "http://kfp.example", "KFP_NAMESPACE": "team"})
    assert sub.namespace == "team"
    assert sub.arguments["news_uri"].startswith("s3://")
    assert sub.arguments["finetune"]["labels"] == ["negative", "positive"]


def test_an_unreachable_host_is_one_line_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("KFP_HOST", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert main(["--params", str(ROOT / "params.yaml"), "--no-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: cannot reach Kubeflow Pipelines at http://127.0.0.1:9: ")
    assert "Connection refused" in err[0]
