"""tokenize: BPE round trip, seeded disjoint splits, megatron indexed files, byte-identical reruns."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from components.common.params import ParamsError, from_dict
from components.tokenize.core import (
    SPLITS,
    dataset_prefix,
    run,
    split_of,
    token_dtype,
    train_tokenizer,
)
from components.tokenize.params import Params
from llm.tokenizer import EOD_TOKEN, load_tokenizer

SENTENCE = (
    "the market rose after the central bank said inflation would ease while exporters "
    "reported strong orders and the minister promised new roads schools and hospitals"
)
WORDS = SENTENCE.split()


def _corpus(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
        docs.append({"id": f"doc-{i:04d}", "text": text.capitalize() + ".", "source": "news", "meta": {}})
    # Texts that stress byte-level round trips.
    docs.append(
        {"id": "doc-unicode", "text": "Café — naïve 東京 🚀\tTabs\n\nand  double  spaces ", "source": "x"}
    )
    docs.append({"id": "doc-literal-eod", "text": f"a document that mentions {EOD_TOKEN} literally"})
    return docs


def _write_corpus(folder: Path, docs: list[dict], parts: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in range(parts):
        with open(folder / f"part-{p:05d}.jsonl", "w", encoding="utf-8") as f:
            for doc in docs[p::parts]:
                f.write(json.dumps(doc) + "\n")
    return folder


def _params(**kw) -> Params:
    return from_dict(
        Params, {"vocab_size": 320, "valid_fraction": 0.1, "test_fraction": 0.1, **kw}, "tokenize"
    )


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_split_is_deterministic_disjoint_and_near_the_fractions():
    ids = [f"doc-{i}" for i in range(4000)]
    first = {i: split_of(i, 7, 0.1, 0.2) for i in ids}
    assert first == {i: split_of(i, 7, 0.1, 0.2) for i in reversed(ids)}  # order-free
    counts = {s: sum(v == s for v in first.values()) for s in SPLITS}
    assert abs(counts["test"] / 4000 - 0.2) < 0.03
    assert abs(counts["valid"] / 4000 - 0.1) < 0.03
    # Another seed gives another split.
    assert first != {i: split_of(i, 8, 0.1, 0.2) for i in ids}


def test_round_trip_is_exact_including_unicode_and_literal_special_tokens():
    texts = [d["text"] for d in _corpus(100)]
    tokenizer = train_tokenizer(texts, vocab_size=300)
    assert tokenizer.token_to_id("<|endoftext|>") == 0
    assert tokenizer.token_to_id("<pad>") == 1
    for text in [*texts, "unseen wörds ✓ 🙂", ""]:
        ids = tokenizer.encode(text).ids
        assert 0 not in ids and 1 not in ids  # data text never yields control tokens
        assert tokenizer.decode(ids) == text


def test_bpe_merges_frequent_words():
    texts = [d["text"] for d in _corpus(200)]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    # "market" appears often: it becomes a single token; bytes alone would need 6.
    assert len(tokenizer.encode(" market").ids) == 1
    assert tokenizer.get_vocab_size() <= 400


def test_token_dtype_follows_vocab_size():
    assert token_dtype(8192) is np.uint16
    assert token_dtype(100_000) is np.int32


def test_run_writes_indexed_datasets_that_megatron_reads_back(tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    docs = _corpus(300)
    out = tmp_path / "tokenize"
    metrics = run(str(_write_corpus(tmp_path / "docs", docs)), str(out), _params())
    tokenizer = load_tokenizer(out)
    eod = tokenizer.token_to_id(EOD_TOKEN)

    expected = {
        s: sorted((d for d in docs if split_of(d["id"], 0, 0.1, 0.1) == s), key=lambda d: d["id"])
        for s in SPLITS
    }
    assert sum(metrics["documents"].values()) == len(docs)
    seen_texts = []
    for split in SPLITS:
        ds = IndexedDataset(dataset_prefix(out, split))
        assert len(ds) == len(expected[split]) == metrics["documents"][split]
        assert int(ds.sequence_lengths.sum()) == metrics["tokens"][split]
        for i, doc in enumerate(expected[split]):
            ids = ds[i]
            assert ids.dtype == np.uint16
            assert ids[-1] == eod and eod not in ids[:-1]  # one eod, at the end
            assert ids[:-1].tolist() == tokenizer.encode(doc["text"]).ids
            assert tokenizer.decode(ids[:-1].tolist()) == doc["text"]
            seen_texts.append(doc["text"])
    assert sorted(seen_texts) == sorted(d["text"] for d in docs)  # every document exactly once
    assert metrics["vocab_size"] == tokenizer.get_vocab_size() <= 320
    assert 1.0 < metrics["tokens_per_word"] < 5.0
    assert json.loads((out / "metrics.json").read_text()) == metrics


def _task(path: Path) -> Path:
    rows = [
        {"id": f"r{i:03d}", "text": f"review {i} of the {split} split", "label": "positive", "split": split}
        for i, split in enumerate(["train"] * 7 + ["valid"] * 3 + ["test"] * 3)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _decoded(out: Path, split: str, source: str = "text") -> list[str]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    tokenizer = load_tokenizer(out)
    ds = IndexedDataset(dataset_prefix(out, split, source))
    return [tokenizer.decode(ds[i][:-1].tolist()) for i in range(len(ds))]


def test_task_texts_form_a_train_and_valid_source_and_the_test_texts_none(tmp_path):
    docs = _write_corpus(tmp_path / "docs", _corpus(200))
    task = _task(tmp_path / "task.jsonl")
    plain = run(str(docs), str(tmp_path / "plain"), _params())
    out = tmp_path / "tapt"
    metrics = run(str(docs), str(out), _params(task_texts_per_document=3), task=str(task))

    assert metrics["task"] == {
        "texts": {"train": 7, "valid": 3},
        "documents": {"train": 3, "valid": 1},  # 3 + 3 + 1 texts; 3
        "tokens": metrics["task"]["tokens"],
    }
    assert _decoded(out, "train", "task") == [
        "review 0 of the train split\nreview 1 of the train split\nreview 2 of the train split",
        "review 3 of the train split\nreview 4 of the train split\nreview 5 of the train split",
        "review 6 of the train split",
    ]
    assert _decoded(out, "valid", "task") == ["\n".join(f"review {i} of the valid split" for i in (7, 8, 9))]
    assert not (out / "test_task_document.bin").exists()
    # The corpus source holds the same documents as without --task, and no review.
    assert metrics["documents"] == plain["documents"]
    for split in SPLITS:
        assert _decoded(out, split) == _decoded(tmp_path / "plain", split)
    # The tokenizer learned the reviews' words too.
    assert len(load_tokenizer(out).encode("review of the split").ids) < len(
        load_tokenizer(tmp_path / "plain").encode("review of the split").ids
    )

    off = run(str(docs), str(tmp_path / "off"), _params(task_texts_per_document=0), task=str(task))
    assert "task" not in off and _hashes(tmp_path / "off") == _hashes(tmp_path / "plain")


def test_a_task_file_without_valid_texts_is_refused(tmp_path):
    docs = _write_corpus(tmp_path / "docs", _corpus(50))
    task = tmp_path / "task.jsonl"
    task.write_text(json.dumps({"id": "r1", "text": "fine", "label": "positive", "split": "train"}) + "\n")
    with pytest.raises(ValueError, match="has no valid texts"):
        run(str(docs), str(tmp_path / "out"), _params(), task=str(task))
    assert not (tmp_path / "out").exists()


def test_reruns_are_byte_identical_and_independent_of_input_order(tmp_path):
    docs = _corpus(150)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run(str(_write_corpus(tmp_path / "docs1", docs)), str(a), _params())
    run(str(_write_corpus(tmp_path / "docs1", docs)), str(b), _params())
    shuffled = docs[:]
    random.Random(1).shuffle(shuffled)
    run(str(_write_corpus(tmp_path / "docs2", shuffled, parts=3)), str(c), _params())
    assert _hashes(a) == _hashes(b) == _hashes(c)
    assert set(_hashes(a)) == {
        "metrics.json",
        "tokenizer.json",
        *(f"{s}_text_document.{ext}" for s in SPLITS for ext in ("bin", "idx")),
    }


def test_empty_texts_are_skipped_and_counted(tmp_path):
    docs = [*_corpus(50), {"id": "blank", "text": "   "}, {"id": "none", "text": None}]
    metrics = run(str(_write_corpus(tmp_path / "docs", docs)), str(tmp_path / "out"), _params())
    assert metrics["skipped_empty"] == 2
    assert sum(metrics["documents"].values()) == len(docs) - 2


def test_an_empty_split_is_refused_naming_the_fraction(tmp_path):
    # megatron cannot memory-map an empty .bin, so an empty valid/test split must fail early.
    docs = _write_corpus(tmp_path / "docs", _corpus(3))
    with pytest.raises(ValueError, match=r"split got no documents .* tokenize\.\w+_fraction"):
        run(str(docs), str(tmp_path / "out"), _params(valid_fraction=0.01, test_fraction=0.01))
    assert not (tmp_path / "out").exists()


def test_no_training_documents_is_an_error_and_leaves_no_output(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="no training documents"):
        run(str(_write_corpus(tmp_path / "docs", [{"id": "a", "text": ""}])), str(out), _params())
    assert not out.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"vocab_size": 100}, "tokenize.vocab_size: must be >= 258"),
        ({"valid_fraction": 1.5}, "tokenize.valid_fraction: must be within [0, 1]"),
        ({"test_fraction": 0.0}, "tokenize.test_fraction: must be > 0"),
        ({"valid_fraction": 0.5, "test_fraction": 0.5}, "tokenize.valid_fraction: valid + test"),
        ({"batch_size": 0}, "tokenize.batch_size: must be > 0"),
        ({"task_texts_per_document": -1}, "tokenize.task_texts_per_document: must be >= 0"),
    ],
)
def test_bad_params_name_the_key(data, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        from_dict(Params, data, "tokenize")
