"""monitor CLI: main() on temp dirs writes Evidently HTML/JSON per batch and metrics.json; a bad
params file exits 2 with one line naming the key, before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

import components.common.params as common_params
from components.common.io import write_jsonl
from components.monitor.__main__ import main

RAW = Path(__file__).resolve().parents[2] / "data" / "raw" / "rotten_tomatoes.csv.bz2"


@pytest.fixture(autouse=True)
def monitor_section_only(monkeypatch):
    # The loader validates every stage's section; this file tests the monitor section alone, so
    # it does not depend on other stages' params (the whole-file check is tested in test_params).
    monkeypatch.setattr(common_params, "SECTIONS", ("monitor",))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """predictions.jsonl (400 reviews) and batches/{reviews,plots}.jsonl (200 each)."""
    root = tmp_path_factory.mktemp("monitor-in")
    df = pd.read_csv(RAW, usecols=["category", "text"]).dropna().sample(frac=1.0, random_state=1)
    reviews = df.loc[df["category"] != "plot", "text"].tolist()
    plots = df.loc[df["category"] == "plot", "text"].tolist()
    write_jsonl(
        root / "predictions.jsonl",
        (
            {"id": f"r{i}", "text": t, "label": "negative", "prediction": "negative", "score": 0.4}
            for i, t in enumerate(reviews[:400])
        ),
    )
    write_jsonl(
        root / "batches" / "reviews.jsonl",
        ({"id": f"h{i}", "text": t, "label": "positive"} for i, t in enumerate(reviews[400:600])),
    )
    write_jsonl(
        root / "batches" / "plots.jsonl", ({"id": f"p{i}", "text": t} for i, t in enumerate(plots[:200]))
    )
    return root / "predictions.jsonl", root / "batches"


def _params(tmp_path: Path, section: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"monitor": section}))
    return path


def _argv(inputs, output: Path, params: Path) -> list[str]:
    reference, batches = inputs
    return [
        "--reference",
        str(reference),
        "--batches",
        str(batches),
        "--output",
        str(output),
        "--params",
        str(params),
    ]


def test_main_writes_reports_and_metrics(inputs, tmp_path):
    out = tmp_path / "monitor"
    assert main(_argv(inputs, out, _params(tmp_path, {"seed": 3}))) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["alerts"] == 1
    assert metrics["batches"]["plots"]["drift_detected"] is True
    assert metrics["batches"]["reviews"]["drift_detected"] is False
    assert metrics["batches"]["reviews"]["rows"] == 200
    for batch in ("reviews", "plots"):
        assert "<html" in (out / batch / "report.html").read_text()[:2000].lower()
        report = json.loads((out / batch / "report.json").read_text())
        kinds = {m["config"]["type"].rsplit(":", 1)[-1] for m in report["metrics"]}
        assert {"DriftedColumnsCount", "ValueDrift"} <= kinds
    assert not list(tmp_path.glob(".monitor.tmp-*"))  # the atomic temp folder is gone


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"drift_share": 1.5}, "monitor.drift_share: must be within [0, 1]"),
        ({"treshold": 0.5}, "monitor.treshold: unknown key"),
        ({"text_method": "bleu"}, "monitor.text_method: expected one of"),
    ],
)
def test_bad_params_exit_2_before_any_work(inputs, tmp_path, capsys, section, message):
    out = tmp_path / "monitor"
    assert main(_argv(inputs, out, _params(tmp_path, section))) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
