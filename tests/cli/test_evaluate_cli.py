"""``python -m components.evaluate``: arguments, params validation, outputs."""

from __future__ import annotations

import csv
import json

import pytest

from components.evaluate.__main__ import main
from tests.task_fixtures import make_finetuned, write_params


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = make_finetuned(
        tmp_path_factory.mktemp("evaluate_cli"),
        {"train": 120, "valid": 40, "test": 30},
        {"epochs": 1, "batch_size": 16, "max_length": 32},
    )
    return [
        *("--pretrained", str(root / "pretrain"), "--tokenized", str(root / "tokenize")),
        *("--finetuned", str(root / "finetune"), "--task", str(root / "task.jsonl")),
    ]


def test_main_writes_metrics_confusion_and_predictions(inputs, tmp_path):
    params = write_params(
        tmp_path / "params.yaml",
        evaluate={"max_tokens": 256, "latency_requests": 5, "throughput_examples": 16},
    )
    out = tmp_path / "evaluate"
    assert main([*inputs, "--output", str(out), "--params", str(params)]) == 0
    # One row per model: the fine-tuned classifier (no --variants) and the TF-IDF baseline.
    rows = json.loads((out / "models.json").read_text())["models"]
    assert [r["model"] for r in rows] == ["finetuned", "baseline"]
    assert (out / "table.md").read_text().count("\n") == 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["examples"] == 30 and metrics["lm_tokens"] == 256
    assert {"perplexity", "accuracy", "macro_f1"} <= set(metrics)
    with open(out / "confusion.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 30
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 30


def test_bad_params_exit_2_before_any_work(inputs, tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", evaluate={"max_tokens": -1})
    out = tmp_path / "evaluate"
    assert main([*inputs, "--output", str(out), "--params", str(params)]) == 2
    assert "evaluate.max_tokens: must be > 0, got -1" in capsys.readouterr().err
    assert not out.exists()
