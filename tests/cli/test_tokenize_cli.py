"""``python -m components.tokenize``: arguments, params validation, outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from components.tokenize.__main__ import main
from tests.task_fixtures import write_params


def _docs(folder):
    folder.mkdir()
    with open(folder / "part-00000.jsonl", "w") as f:
        for i in range(60):
            text = f"Document {i} reports that the market rose while the bank held rates at {i % 7} percent."
            f.write(json.dumps({"id": f"d{i}", "text": text, "source": "news", "meta": {}}) + "\n")
    return folder


def test_main_writes_the_stage_outputs(tmp_path):
    params = write_params(
        tmp_path / "params.yaml", tokenize={"vocab_size": 300, "valid_fraction": 0.2, "test_fraction": 0.2}
    )
    out = tmp_path / "tokenize"
    assert (
        main(["--input", str(_docs(tmp_path / "docs")), "--output", str(out), "--params", str(params)]) == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert sum(metrics["documents"].values()) == 60
    assert metrics["vocab_size"] <= 300
    for split in ("train", "valid", "test"):
        assert (out / f"{split}_text_document.bin").stat().st_size > 0
        assert (out / f"{split}_text_document.idx").exists()
    assert (out / "tokenizer.json").exists()


def test_bad_params_exit_2_with_one_line_naming_the_key(tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", tokenize={"vocab_size": "big"})
    out = tmp_path / "tokenize"
    code = main(["--input", str(_docs(tmp_path / "docs")), "--output", str(out), "--params", str(params)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tokenize.vocab_size: expected int, got str 'big'" in err
    assert not out.exists()


def test_missing_argument_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--output", str(tmp_path / "out")])
    assert exc.value.code == 2


def test_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "components.tokenize", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "--input" in result.stdout
