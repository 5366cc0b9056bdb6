"""pretrain: schedule and vocabulary helpers, and training on a tiny corpus (loss falls,
runs are reproducible, the checkpoint reproduces the recorded validation loss)."""

from __future__ import annotations

import csv
import json
import math
import tempfile
from pathlib import Path

import pytest

from components.common.params import ParamsError, from_dict
from components.pretrain.core import (
    build_datasets,
    eval_steps,
    evaluate,
    gpt_shape,
    lr_at,
    micro_batches,
    padded_vocab_size,
    run,
    tokenizer_info,
)
from components.pretrain.params import Params
from tests.gpt_fixtures import make_token_data

TINY = {
    "model": {
        "num_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "ffn_hidden_size": 128,
        "seq_length": 64,
    },
    "make_vocab_size_divisible_by": 64,
    "micro_batch_size": 4,
    "global_batch_size": 8,  # two micro batches per step: exercises gradient accumulation
    "train_steps": 30,
    "lr": 3.0e-3,
    "min_lr": 3.0e-4,
    "warmup_steps": 3,
    "eval_interval": 10,
    "eval_iters": 2,
    "seed": 7,
}


def _params(**overrides) -> Params:
    return from_dict(Params, {**TINY, **overrides}, "pretrain")


# ---------------------------------------------------------------- pure helpers


def test_padded_vocab_size_rounds_up_to_the_multiple_times_tp():
    assert padded_vocab_size(300, 64) == 320
    assert padded_vocab_size(320, 64) == 320
    assert padded_vocab_size(8192, 128) == 8192
    assert padded_vocab_size(8193, 128, tensor_parallel_size=2) == 8448


def test_lr_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    p = _params(train_steps=100, warmup_steps=10, lr=1.0, min_lr=0.1)
    assert lr_at(1, p) == pytest.approx(0.1)
    assert lr_at(10, p) == pytest.approx(1.0)
    assert lr_at(55, p) == pytest.approx(0.55)  # halfway through the decay: the mean of lr and min_lr
    assert lr_at(100, p) == pytest.approx(0.1)
    decay = [lr_at(s, p) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))


def test_eval_steps_include_the_last_step():
    assert eval_steps(_params(train_steps=30, eval_interval=10)) == [10, 20, 30]
    assert eval_steps(_params(train_steps=25, eval_interval=10)) == [10, 20, 25]
    assert eval_steps(_params(train_steps=5, eval_interval=10, warmup_steps=1)) == [5]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"global_batch_size": 6}, "pretrain.global_batch_size"),
        ({"min_lr": 1.0}, "pretrain.min_lr"),
        ({"warmup_steps": 31}, "pretrain.warmup_steps"),
        ({"tensor_parallel_size": 2}, "pretrain.tensor_parallel_size"),
        ({"model": {"hidden_size": 60, "num_attention_heads": 8}}, "pretrain.model.num_attention_heads"),
        ({"model": {"num_layers": "two"}}, "pretrain.model.num_layers"),
        ({"lr_schedule": "cosine"}, "pretrain.lr_schedule"),
    ],
)
def test_bad_params_name_the_key(overrides, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        _params(**overrides)


def test_shape_pads_the_tokenizer_vocabulary():
    shape = gpt_shape(_params(), vocab_size=300)
    assert (shape.vocab_size, shape.seq_length, shape.hidden_size) == (320, 64, 64)


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_token_data(tmp_path_factory.mktemp("tokenize"))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pretrain") / "out"
    return out, run(str(data), str(out), _params())


def _loss_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "loss.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_training_lowers_the_loss_and_writes_the_outputs(trained):
    out, metrics = trained
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "loss.csv", "metrics.json", "model.json"]
    rows = _loss_rows(out)
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    valid = [float(r["valid_loss"]) for r in rows]
    train = [float(r["train_loss"]) for r in rows]
    # From about ln(320) = 5.8 nats for the untrained model, clearly down on this tiny grammar.
    assert metrics["initial_valid_loss"] == pytest.approx(math.log(320), abs=0.3)
    assert valid[-1] < metrics["initial_valid_loss"] - 1.0
    assert valid == sorted(valid, reverse=True) and train == sorted(train, reverse=True)
    assert metrics["valid_loss"] == pytest.approx(valid[-1], abs=1e-6)
    assert metrics["valid_perplexity"] == pytest.approx(math.exp(metrics["valid_loss"]), rel=1e-5)
    assert metrics["steps"] == 30 and metrics["tokens"] == 30 * 8 * 64
    assert metrics["parameters"] == json.loads((out / "metrics.json").read_text())["parameters"] > 0


def test_same_data_and_params_give_identical_losses(data, trained, tmp_path):
    out, metrics = trained
    again = run(str(data), str(tmp_path / "again"), _params())
    assert (tmp_path / "again" / "loss.csv").read_bytes() == (out / "loss.csv").read_bytes()
    assert (tmp_path / "again" / "model.json").read_bytes() == (out / "model.json").read_bytes()
    timing = {"tokens_per_s", "seconds"}
    assert {k: v for k, v in again.items() if k not in timing} == {
        k: v for k, v in metrics.items() if k not in timing
    }


def test_checkpoint_reproduces_the_recorded_validation_loss(data, trained):
    from components.common.gpt import load_pretrained, megatron_runtime

    out, metrics = trained
    params = _params()
    vocab_size, eod = tokenizer_info(data)
    with megatron_runtime(seed=0), tempfile.TemporaryDirectory() as cache:
        model, shape = load_pretrained(out)
        assert shape == gpt_shape(params, vocab_size)
        _train, valid = build_datasets(data, params, vocab_size, eod, cache)
        batches = list(micro_batches(valid, 0, params.eval_iters, params.micro_batch_size))
        loss = evaluate(model, batches)
    assert loss == pytest.approx(metrics["valid_loss"], abs=1e-6)
