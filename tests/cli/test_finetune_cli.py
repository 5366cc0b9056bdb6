"""``python -m components.finetune``: arguments, params validation, outputs."""

from __future__ import annotations

import csv
import json

import pytest

from components.finetune.__main__ import main
from tests.task_fixtures import make_pretrained, make_task, make_tokenized, write_params

FAST = {"epochs": 2, "batch_size": 16, "lr": 1e-3, "head_lr": 3e-3, "max_length": 32}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune_cli")
    tokenized = make_tokenized(root / "tokenize")
    pretrained = make_pretrained(root / "pretrain", tokenized)
    task = make_task(root / "task.jsonl", {"train": 120, "valid": 40, "test": 20})
    return ["--pretrained", str(pretrained), "--tokenized", str(tokenized), "--task", str(task)]


def test_main_writes_the_classifier(inputs, tmp_path):
    params = write_params(tmp_path / "params.yaml", finetune=FAST)
    out = tmp_path / "finetune"
    assert main([*inputs, "--output", str(out), "--params", str(params)]) == 0
    assert {p.name for p in out.iterdir()} == {
        "model.safetensors",
        "classifier.json",
        "tokenizer.json",
        "history.csv",
        "metrics.json",
        "run.json",  # the entry's run record (components.common.entry.RUN_RECORD)
    }
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_loss", "valid_loss", "valid_accuracy", "valid_macro_f1"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_examples"] == 120 and metrics["epochs_run"] == len(rows)
    # The monitor prices training from these: wall seconds and accelerator-hours (1 CPU machine).
    assert metrics["seconds"] > 0 and metrics["held_devices"] == 1
    assert metrics["accelerator_hours"] == pytest.approx(metrics["seconds"] / 3600, abs=1e-6)


def test_bad_params_exit_2_before_any_work(inputs, tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", finetune={**FAST, "pooling": "max"})
    out = tmp_path / "finetune"
    assert main([*inputs, "--output", str(out), "--params", str(params)]) == 2
    assert "finetune.pooling: expected one of ['mean', 'last'], got 'max'" in capsys.readouterr().err
    assert not out.exists()


def test_missing_argument_is_a_usage_error(inputs, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([*inputs])  # no --output
    assert exc.value.code == 2
