"""``python -m components.sft``: arguments, params validation, missing inputs, outputs."""

from __future__ import annotations

import json

import pytest

from components.sft.__main__ import main
from tests.task_fixtures import make_pretrained, make_tokenized, write_params

FAST = {"steps": 3, "batch_size": 4, "valid_interval": 2, "max_seq_tokens": 32, "valid_examples": 4}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_cli")
    tokenized = make_tokenized(root / "tokenize")
    pretrained = make_pretrained(root / "pretrain", tokenized)
    pairs = root / "qa.jsonl"
    rows = [
        {
            "prompt": f"the film was good {i} . answer:",
            "response": " good",
            "split": "valid" if i % 4 == 0 else "train",
        }
        for i in range(16)
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"--pretrained": str(pretrained), "--tokenized": str(tokenized), "--pairs": str(pairs)}


def _argv(inputs, **overrides) -> list[str]:
    return [x for k, v in {**inputs, **overrides}.items() for x in (k, v)]


def test_main_writes_a_generator_folder(inputs, tmp_path):
    params = write_params(tmp_path / "params.yaml", sft=FAST)
    out = tmp_path / "sft"
    assert main([*_argv(inputs), "--output", str(out), "--params", str(params)]) == 0
    assert {p.name for p in out.iterdir()} == {
        "model.json",
        "checkpoint",
        "tokenizer.json",
        "generator.json",
        "rejected.jsonl",
        "loss.csv",
        "steps.csv",
        "metrics.json",
        "run.json",  # the entry's run record (components.common.entry.RUN_RECORD)
    }
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["train_pairs"], metrics["valid_pairs"], metrics["steps"]) == (12, 4, 3)
    assert metrics["seconds"] > 0 and metrics["tokens_per_s"] > 0


def test_a_missing_input_exits_2_with_one_line(inputs, tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", sft=FAST)
    out = tmp_path / "sft"
    argv = _argv(inputs, **{"--pairs": str(tmp_path / "nope.jsonl")})
    assert main([*argv, "--output", str(out), "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: sft: pairs file {tmp_path / 'nope.jsonl'} not found"]
    assert not out.exists()


def test_bad_params_exit_2_naming_the_key(inputs, tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", sft={**FAST, "batch_size": 0})
    out = tmp_path / "sft"
    assert main([*_argv(inputs), "--output", str(out), "--params", str(params)]) == 2
    assert "sft.batch_size: must be > 0, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_missing_argument_is_a_usage_error(inputs):
    with pytest.raises(SystemExit) as exc:
        main(_argv(inputs))  # no --output
    assert exc.value.code == 2
