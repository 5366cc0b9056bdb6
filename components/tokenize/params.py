"""Params of the tokenize stage (stdlib only: imported by the params loader of every stage)."""

from __future__ import annotations

from dataclasses import dataclass

from components.common.params import check_fraction, check_positive

SECTION = "tokenize"

# 256 byte symbols of the byte-level alphabet + the two special tokens.
MIN_VOCAB_SIZE = 258


@dataclass(frozen=True)
class Params:
    """The ``tokenize`` section of params.yaml. Defaults are the CPU demo values."""

    vocab_size: int = 8192  # BPE vocabulary size, bytes and special tokens included (tokens)
    min_frequency: int = 2  # occurrences a symbol pair needs before it may be merged (count)
    valid_fraction: float = 0.05  # share of documents (by hash of id) in the valid split (0-1)
    test_fraction: float = 0.05  # share of documents (by hash of id) in the test split (0-1)
    seed: int = 0  # seed of the hash-based document split (integer; same seed -> same split)
    batch_size: int = 512  # documents per encode batch (documents; memory/progress granularity only)
    # With --task: the task's train and valid texts (labels unused) packed this many per document
    # into the "task" source that pretrain blends in: task-adaptive pretraining (Gururangan et al.
    # 2020). 0 = no task source (then pretrain.data.sources must not name it) (texts).
    task_texts_per_document: int = 16

    def __post_init__(self) -> None:
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"{SECTION}.vocab_size: must be >= {MIN_VOCAB_SIZE} (256 bytes + 2 special tokens), "
                f"got {self.vocab_size!r}"
            )
        check_positive(SECTION, min_frequency=self.min_frequency, batch_size=self.batch_size)
        if self.task_texts_per_document < 0:
            raise ValueError(
                f"{SECTION}.task_texts_per_document: must be >= 0, got {self.task_texts_per_document!r}"
            )
        check_fraction(SECTION, valid_fraction=self.valid_fraction, test_fraction=self.test_fraction)
        # pretrain validates on valid and evaluate measures perplexity on test: neither may be empty.
        check_positive(SECTION, valid_fraction=self.valid_fraction, test_fraction=self.test_fraction)
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"{SECTION}.valid_fraction: valid + test fractions must leave a train split, "
                f"got {self.valid_fraction + self.test_fraction:.6g}"
            )
