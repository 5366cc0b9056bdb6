"""tokenize: byte-level BPE tokenizer + megatron-core indexed datasets for pretraining.

Contract: ``run(input, output, params, task=None)`` reads the clean documents (JSONL files
``{id, text, ...}`` under ``input``), assigns each document to train / valid / test by a seeded hash
of its id, trains a byte-level BPE tokenizer (Hugging Face ``tokenizers``) on the train split only
(so perplexity on test is measured on text the tokenizer never saw), encodes every document with
``<|endoftext|>`` appended, and writes into ``output`` (atomically):

- ``tokenizer.json``: the tokenizer (special tokens ``<|endoftext|>`` = id 0, ``<pad>`` = id 1);
- ``{train,valid,test}_text_document.{bin,idx}``: megatron-core ``IndexedDataset`` files, one
  document per entry, eod-terminated, the token dtype chosen from the vocabulary size;
- ``{train,valid}_task_document.{bin,idx}``: the same for the task's texts (below), with ``task``;
- ``metrics.json``: documents and tokens per split, vocabulary size, tokens per word, bytes per
  token.

Task-adaptive pretraining (Gururangan et al. 2020, "Don't Stop Pretraining"): with ``task`` (the
ingest stage's task.jsonl) and ``task_texts_per_document`` > 0, the texts of the task's train and
valid splits, labels dropped, are packed that many per document (in id order, one text per line)
into a second source, ``{train,valid}_task_document.{bin,idx}``, which pretrain blends with the
corpus by weight (``pretrain.data.sources``); the tokenizer is trained on both train sets, so the
GPT and its vocabulary know the domain they will be fine-tuned on. Pretraining trains on the task's
train texts only (valid ones are only scored); its test texts never enter any file, and the clean
stage removes corpus documents that overlap valid or test. The ``text`` files stay the corpus's
alone, so perplexity keeps measuring held-out corpus text.

Determinism: documents are sorted by (id, text) inside each split, so the output does not depend on
the order of the input files; BPE training was checked to give the same merges with 1, 2 and 8
rayon threads. Same inputs + params => byte-identical files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.common.io import atomic_output_dir, read_jsonl, write_text
from components.common.metrics import write_metrics
from components.common.progress import Progress
from components.common.seed import stable_fraction
from components.tokenize.params import Params
from llm.formats import SPLITS, TASK_SOURCE, TASK_SPLITS, TEXT_SOURCE, TOKENIZER_FILE, dataset_prefix
from llm.tokenizer import SPECIAL_TOKENS, as_data_tokenizer, new_tokenizer, special_ids

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)


def split_of(doc_id: str, seed: int, valid_fraction: float, test_fraction: float) -> str:
    """The split of a document: a pure function of its id and the seed (order-free, stable).

    Hash fraction f in [0, 1): f < test -> "test", f < test + valid -> "valid", else "train".
    """
    f = stable_fraction(str(doc_id), seed)
    if f < test_fraction:
        return "test"
    if f < test_fraction + valid_fraction:
        return "valid"
    return "train"


def token_dtype(vocab_size: int) -> type[np.number]:
    """The smallest megatron token dtype for ``vocab_size`` ids (uint16 below 65,500, else int32)."""
    from megatron.core.datasets.indexed_dataset import DType

    return DType.optimal_dtype(vocab_size)


def train_tokenizer(texts: Sequence[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``texts`` (vocab_size counts bytes + special tokens).

    The full 256-byte alphabet is always included, so any text encodes without unknown tokens.
    """
    from tokenizers import pre_tokenizers, trainers

    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return as_data_tokenizer(tokenizer)


def encode_documents(
    tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 512, what: str = "encode"
) -> Iterator[list[int]]:
    """Token ids of each text with the eod id appended, in order (batch-encoded, in threads)."""
    eod = special_ids(tokenizer)["eod_id"]
    with Progress(what, total=len(texts), unit="docs") as progress:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            for encoding in tokenizer.encode_batch(list(batch), add_special_tokens=False):
                yield [*encoding.ids, eod]
            progress.update(len(batch))


def write_indexed_dataset(prefix: str, documents: Iterable[Sequence[int]], dtype: type) -> tuple[int, int]:
    """Write ``prefix.bin`` / ``prefix.idx`` with one megatron document per item.

    Returns (documents, tokens). Each document is one sequence (as megatron's preprocess_data.py
    writes it without sentence splitting).
    """
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    n_docs = n_tokens = 0
    for ids in documents:
        builder.add_document(list(ids), [len(ids)])
        n_docs += 1
        n_tokens += len(ids)
    builder.finalize(prefix + ".idx")
    return n_docs, n_tokens


@dataclass
class _Doc:
    id: str
    text: str


def read_split_documents(input_uri: str, params: Params) -> tuple[dict[str, list[_Doc]], int]:
    """Documents of each split, sorted by (id, text); and the number of empty texts skipped."""
    splits: dict[str, list[_Doc]] = {s: [] for s in SPLITS}
    empty = 0
    for record in read_jsonl(input_uri):
        text = record.get("text") or ""
        if not text.strip():
            empty += 1
            continue
        doc_id = str(record["id"])
        split = split_of(doc_id, params.seed, params.valid_fraction, params.test_fraction)
        splits[split].append(_Doc(doc_id, text))
    for docs in splits.values():
        docs.sort(key=lambda d: (d.id, d.text))
    return splits, empty


def task_documents(task: str, split: str, per_document: int) -> tuple[list[_Doc], int]:
    """The texts of the task's ``split`` packed ``per_document`` per document (id order), ids
    ``task:<first text's id>``; and the number of texts."""
    texts = sorted(
        (str(r["id"]), str(r["text"]))
        for r in read_jsonl(task)
        if r.get("split") == split and str(r.get("text") or "").strip()
    )
    docs = [
        _Doc(f"task:{texts[i][0]}", "\n".join(text for _, text in texts[i : i + per_document]))
        for i in range(0, len(texts), per_document)
    ]
    return docs, len(texts)


def run(input: str, output: str, params: Params, task: str | None = None) -> dict[str, Any]:
    """Train the tokenizer, write the three indexed datasets; return the metrics (see module doc)."""
    splits, empty = read_split_documents(input, params)
    task_splits: dict[str, list[_Doc]] = {}
    task_texts: dict[str, int] = {}
    if task and params.task_texts_per_document:
        for split in TASK_SPLITS:
            task_splits[split], task_texts[split] = task_documents(
                task, split, params.task_texts_per_document
            )
            if not task_splits[split]:
                raise ValueError(f"tokenize: {task} has no {split} texts for the task source")
    if not splits["train"]:
        raise ValueError(f"tokenize: no training documents under {input}")
    for split, docs in splits.items():
        # megatron cannot memory-map an empty .bin file, and pretrain/evaluate read every split.
        if not docs:
            raise ValueError(
                f"tokenize: the {split} split got no documents out of {sum(map(len, splits.values()))}; "
                f"raise tokenize.{split}_fraction or add documents"
            )
    log.info("tokenize: documents %s", {s: len(d) for s, d in splits.items()})

    train_texts = [d.text for d in splits["train"] + task_splits.get("train", [])]
    tokenizer = train_tokenizer(train_texts, params.vocab_size, params.min_frequency)
    vocab_size = tokenizer.get_vocab_size()
    dtype = token_dtype(vocab_size)
    metrics: dict[str, Any] = {
        "vocab_size": vocab_size,
        **special_ids(tokenizer),
        "dtype": dtype.__name__,
        "skipped_empty": empty,
        "documents": {},
        "tokens": {},
    }
    if task_splits:
        metrics["task"] = {"texts": task_texts, "documents": {}, "tokens": {}}
    files = [(TEXT_SOURCE, split, splits[split], metrics) for split in SPLITS]
    files += [(TASK_SOURCE, split, docs, metrics.get("task")) for split, docs in task_splits.items()]
    words = text_bytes = body_tokens = 0
    with atomic_output_dir(output) as out:
        write_text(out / TOKENIZER_FILE, tokenizer.to_str(pretty=True) + "\n")
        for source, split, docs, counts in files:
            texts = [d.text for d in docs]
            n_docs, n_tokens = write_indexed_dataset(
                dataset_prefix(out, split, source),
                encode_documents(tokenizer, texts, params.batch_size, what=f"encode {split} {source}"),
                dtype,
            )
            counts["documents"][split] = n_docs
            counts["tokens"][split] = n_tokens
            words += sum(len(t.split()) for t in texts)
            text_bytes += sum(len(t.encode("utf-8")) for t in texts)
            body_tokens += n_tokens - n_docs  # without the eod token of each document
        metrics["tokens_per_word"] = body_tokens / max(words, 1)
        metrics["bytes_per_token"] = text_bytes / max(body_tokens, 1)
        metrics = write_metrics(out, metrics)
    log.info(
        "tokenize: vocab %d, tokens %s, %.3f tokens/word",
        vocab_size,
        metrics["tokens"],
        metrics["tokens_per_word"],
    )
    return metrics
