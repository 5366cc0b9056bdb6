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


def _window_params(tmp_path: Path, **window) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["monitoring"]["training_window"].update(window)
    raw["monitoring"]["prices"].update(train_usd_per_hour=2.0, train_off_peak_usd_per_hour=0.5)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_run_outside_the_off_peak_window_is_refused_before_contacting_the_host(
    tmp_path, monkeypatch, capsys
):
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    opens, closes = now + dt.timedelta(hours=2), now + dt.timedelta(hours=3)
    params = _window_params(tmp_path, enabled=True, start=f"{opens:%H:%M}", end=f"{closes:%H:%M}")
    monkeypatch.setenv("KFP_HOST", "http://127.0.0.1:9")  # nothing listens: reaching it fails differently
    monkeypatch.chdir(tmp_path)  # no local training recorded: the estimate says so
    assert main(["--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: training refused: ") and "is on-peak; the off-peak window is" in err
    assert "$2/h on-peak, $0.5/h off-peak" in err and "--force" in err
    assert "cannot reach" not in err
    # Forced, it goes on to the host (and fails there: nothing listens).
    assert main(["--params", str(params), "--force"]) == 1
    captured = capsys.readouterr()
    assert "forced: " in captured.out and "cannot reach Kubeflow Pipelines" in captured.err
