"""finetune: data helpers, pooling, schedule and early stopping; training a tiny GPT on a
separable "good ... / bad ..." task beats the majority class; seeded reruns are byte-identical."""

from __future__ import annotations

import csv
import hashlib
import json
import random

import pytest
import torch

from components.common.params import ParamsError, from_dict
from components.finetune.core import EarlyStopping, held_devices, lr_factor, run, select_train
from components.finetune.params import Params
from llm.classifier import load_classifier, pool
from llm.task_data import (
    Example,
    class_weights,
    encode_texts,
    length_bucketed_batches,
    load_task,
    pad_batch,
    sorted_batches,
)
from llm.tokenizer import load_tokenizer
from tests.task_fixtures import make_pretrained, make_task, make_tokenized

FAST = {"epochs": 3, "batch_size": 16, "lr": 1e-3, "head_lr": 3e-3, "max_length": 32}


# ----------------------------------------------------------------------------- pure helpers


def test_class_weights_balanced_by_hand():
    # n = 4, k = 2: class 0 has 3 examples -> 4 / (2 * 3); class 1 has 1 -> 4 / (2 * 1).
    assert class_weights([0, 0, 0, 1], 2) == pytest.approx([2 / 3, 2.0])
    assert class_weights([0, 1], 2) == [1.0, 1.0]
    assert class_weights([0, 0], 3) == pytest.approx([1 / 3, 0.0, 0.0])  # absent classes weigh nothing
    assert class_weights([0, 0, 0, 1], 2, "none") == [1.0, 1.0]


def test_pad_batch_right_pads_and_reports_lengths():
    ids, lengths = pad_batch([[5, 6, 7], [8]], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert lengths.tolist() == [3, 1]


def test_encode_texts_truncates_and_closes_with_eod(tmp_path):
    tokenizer = load_tokenizer(make_tokenized(tmp_path / "tok"))
    long_text = "the film was good " * 20
    seqs = encode_texts(tokenizer, [long_text, "good"], max_length=8, eod_id=0)
    assert len(seqs[0]) == 8 and seqs[0][-1] == 0
    assert seqs[0][:-1] == tokenizer.encode(long_text).ids[:7]
    assert seqs[1] == [*tokenizer.encode("good").ids, 0]


def test_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [9.0, 9.0], [9.0, 9.0]]])
    lengths = torch.tensor([2, 1])
    assert pool(hidden, lengths, "mean").tolist() == [[2.0, 3.0], [5.0, 6.0]]
    assert pool(hidden, lengths, "last").tolist() == [[3.0, 4.0], [5.0, 6.0]]
    with pytest.raises(ValueError):
        pool(hidden, lengths, "max")


def test_length_bucketed_batches_cover_every_index_once_and_are_seeded():
    rng = random.Random(0)
    lengths = [rng.randint(2, 64) for _ in range(1000)]
    batches = length_bucketed_batches(lengths, 32, torch.Generator().manual_seed(1), bucket_batches=4)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    again = length_bucketed_batches(lengths, 32, torch.Generator().manual_seed(1), bucket_batches=4)
    other = length_bucketed_batches(lengths, 32, torch.Generator().manual_seed(2), bucket_batches=4)
    assert batches == again and batches != other

    # Less padding than plain random batches: padded width is the batch's longest member.
    def padded(bs):
        return sum(len(b) * max(lengths[i] for i in b) for b in bs)

    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).tolist()
    random_batches = [perm[i : i + 32] for i in range(0, 1000, 32)]
    assert padded(batches) < 0.8 * padded(random_batches)
    assert sorted(i for b in sorted_batches(lengths, 32) for i in b) == list(range(1000))


def test_lr_factor_warms_up_then_decays_linearly():
    factors = [lr_factor(s, 2, 10) for s in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert factors[2:] == pytest.approx([(10 - s) / 8 for s in range(2, 10)])
    assert lr_factor(0, 0, 4) == 1.0


def test_early_stopping_keeps_the_best_epoch():
    stopper = EarlyStopping(patience=2)
    steps = [(1, 0.5), (2, 0.6), (3, 0.55), (4, 0.6)]  # epoch 4 only ties: not an improvement
    improved = [stopper.update(e, s) for e, s in steps]
    assert improved == [True, True, False, False]
    assert stopper.best_epoch == 2 and stopper.best == 0.6 and stopper.should_stop


def test_held_devices_are_the_pods_gpus_or_one_cpu_machine():
    pod = from_dict(Params, {"accelerator_type": "nvidia.com/gpu", "accelerator_count": 2}, "finetune")
    assert held_devices(pod, cuda=True) == (2, "gpu")  # requested for the pod: held the whole run
    assert held_devices(Params(), cuda=True) == (1, "gpu")  # at least the one it trains on
    assert held_devices(pod, cuda=False) == held_devices(Params(), cuda=False) == (1, "cpu_machine")


def test_select_train_is_a_seeded_order_free_subset():
    examples = [Example(f"id-{i}", "t", i % 2) for i in range(50)]
    subset = select_train(examples, 10, seed=0)
    assert len(subset) == 10
    assert subset == select_train(list(reversed(examples)), 10, seed=0)
    assert select_train(examples, 0, seed=0) == examples


def test_load_task_refuses_unknown_labels(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_text(json.dumps({"id": "1", "text": "x", "label": "neutral", "split": "train"}) + "\n")
    with pytest.raises(ValueError, match="label 'neutral', not one of"):
        load_task(str(path), ["negative", "positive"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"labels": ["positive"]}, "finetune.labels: need at least 2 distinct labels"),
        ({"pooling": "max"}, "finetune.pooling: expected one of ['mean', 'last']"),
        ({"max_length": 1}, "finetune.max_length: must be >= 2"),
        ({"patience": 0}, "finetune.patience: must be > 0"),
        ({"head_dropout": 1.5}, "finetune.head_dropout: must be within [0, 1]"),
    ],
)
def test_bad_params_name_the_key(data, message):
    with pytest.raises(ParamsError) as exc:
        from_dict(Params, data, "finetune")
    assert str(exc.value).startswith(message)


# ----------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    tokenized = make_tokenized(root / "tokenize")
    return {
        "pretrained": str(make_pretrained(root / "pretrain", tokenized)),
        "tokenized": str(tokenized),
        "task": str(make_task(root / "task.jsonl")),
    }


TIMING = {"seconds", "accelerator_hours"}  # wall-clock figures: the only ones a rerun may change


def _untimed(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


def _hashes(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_finetune_learns_the_task_and_reruns_are_identical(inputs, tmp_path):
    params = from_dict(Params, FAST, "finetune")
    a, b = tmp_path / "a", tmp_path / "b"
    metrics = run(**inputs, output=str(a), params=params)
    again = run(**inputs, output=str(b), params=params)
    # Identical reruns: every file byte for byte, and metrics.json but for its wall-clock figures.
    assert {k: v for k, v in _hashes(a).items() if k != "metrics.json"} == {
        k: v for k, v in _hashes(b).items() if k != "metrics.json"
    }
    assert _untimed(json.loads((a / "metrics.json").read_text())) == _untimed(
        json.loads((b / "metrics.json").read_text())
    )
    assert _untimed(again) == _untimed(metrics)
    assert set(_hashes(a)) == {
        "model.safetensors",
        "classifier.json",
        "tokenizer.json",
        "history.csv",
        "metrics.json",
    }
    # The stage's time, never dollars (monitoring.prices prices it): one CPU machine, its wall time.
    assert metrics["seconds"] > 0 and "cost" not in metrics and "usd" not in metrics
    assert (metrics["held_devices"], metrics["held_device_kind"]) == (1, "cpu_machine")
    assert metrics["accelerator_hours"] == pytest.approx(metrics["seconds"] / 3600, abs=1e-6)

    # ~60% of the valid examples are positive: the majority class scores 0.6 accuracy and
    # 0.375 macro-F1; the classifier must do clearly better.
    assert metrics["valid_accuracy"] >= 0.8
    assert metrics["valid_macro_f1"] >= 0.75
    with open(a / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in history] == list(range(1, metrics["epochs_run"] + 1))
    assert float(history[-1]["train_loss"]) < float(history[0]["train_loss"])  # it learned
    assert metrics["valid_macro_f1"] == pytest.approx(max(float(r["valid_macro_f1"]) for r in history))
    config = json.loads((a / "classifier.json").read_text())
    assert (
        config["labels"] == ["negative", "positive"] and config["pad_id"] == 1 and config["pooling"] == "last"
    )

    classifier = load_classifier(a)
    labels, scores = classifier.predict(["the film was good and great", "the film was bad and awful", "dull"])
    assert labels == ["positive", "negative", "negative"]
    assert all(0.5 < s <= 1.0 for s in scores)
    # Batching and padding do not change a text's prediction.
    single = [classifier.predict([t])[1][0] for t in ["the film was good and great", "dull"]]
    assert single == pytest.approx([scores[0], scores[2]], abs=1e-5)


def test_frozen_backbone_trains_only_the_head(inputs, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "frozen"
    params = from_dict(
        Params,
        {
            **FAST,
            "freeze_backbone": True,
            "epochs": 15,
            "head_lr": 0.1,
            "head_dropout": 0.0,
            "pooling": "mean",
        },
        "finetune",
    )
    metrics = run(**inputs, output=str(out), params=params)
    assert metrics["trainable_parameters"] == 32 * 2 + 2  # the linear head only
    # Backbone tensors are the pretrained ones, bit for bit.
    full = tmp_path / "full"
    run(**inputs, output=str(full), params=from_dict(Params, {**FAST, "epochs": 1}, "finetune"))
    frozen_state, tuned_state = (
        load_file(str(out / "model.safetensors")),
        load_file(str(full / "model.safetensors")),
    )
    from llm.gpt import load_pretrained, megatron_runtime

    with megatron_runtime():
        pretrained, _ = load_pretrained(inputs["pretrained"])
        original = {k: v for k, v in pretrained.state_dict().items() if torch.is_tensor(v)}
    key = "backbone.embedding.word_embeddings.weight"
    assert torch.equal(frozen_state[key], original["embedding.word_embeddings.weight"])
    assert not torch.equal(tuned_state[key], original["embedding.word_embeddings.weight"])
    # Even frozen random features carry the cue words: a linear probe beats the majority (0.6).
    assert metrics["valid_accuracy"] >= 0.8


def test_max_length_beyond_the_gpt_context_is_refused(inputs, tmp_path):
    params = from_dict(Params, {**FAST, "max_length": 64}, "finetune")  # the tiny GPT takes 32
    with pytest.raises(ValueError, match="finetune.max_length: 64 exceeds the GPT's seq_length 32"):
        run(**inputs, output=str(tmp_path / "out"), params=params)
    assert not (tmp_path / "out").exists()
