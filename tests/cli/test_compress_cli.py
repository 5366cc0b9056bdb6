"""``python -m components.compress``: arguments, params validation, one folder per variant."""

from __future__ import annotations

import json

import pytest

from components.compress.__main__ import main
from tests.task_fixtures import make_finetuned, write_params


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = make_finetuned(
        tmp_path_factory.mktemp("compress_cli"),
        {"train": 80, "valid": 30, "test": 20},
        {"epochs": 1, "max_length": 32},
    )
    return [
        "--finetuned",
        str(root / "finetune"),
        "--tokenized",
        str(root / "tokenize"),
        "--task",
        str(root / "task.jsonl"),
    ]


def test_main_writes_the_chosen_variants(inputs, tmp_path):
    params = write_params(tmp_path / "params.yaml", compress={"variants": ["int8", "pruned"]})
    out = tmp_path / "compress"
    assert main([*inputs, "--output", str(out), "--params", str(params)]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["int8", "pruned"]
    for name in ("int8", "pruned"):
        assert {"classifier.json", "model.safetensors", "tokenizer.json"} <= {
            p.name for p in (out / name).iterdir()
        }
    assert json.loads((out / "int8" / "classifier.json").read_text())["quantization"] == "int8-dynamic"


def test_bad_params_exit_2_before_any_work(inputs, tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", compress={"distill_layers": 0})
    out = tmp_path / "compress"
    assert main([*inputs, "--output", str(out), "--params", str(params)]) == 2
    assert "compress.distill_layers: must be > 0" in capsys.readouterr().err
    assert not out.exists()
