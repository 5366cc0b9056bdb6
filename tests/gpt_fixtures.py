"""A tiny pretraining corpus in the exact format of the tokenize stage, for pretrain tests.

``make_token_data(dir)`` writes ``tokenizer.json`` and ``{train,valid,test}_text_document.{bin,idx}``
(megatron IndexedDataset, eod-terminated documents) using the tokenize stage's own helpers, from
seeded synthetic sentences with a simple grammar, so a small GPT learns them within a few dozen
steps.
"""

from __future__ import annotations

import random
from pathlib import Path

from components.tokenize.core import (
    SPLITS,
    TOKENIZER_FILE,
    dataset_prefix,
    encode_documents,
    token_dtype,
    train_tokenizer,
    write_indexed_dataset,
)

# pretrain's wall-clock metrics: the only keys two runs of the same training may differ in.
PRETRAIN_TIMING = frozenset(
    {
        "tokens_per_s",
        "seconds",
        "seconds_this_run",
        "train_seconds",
        "model_flops_per_s",
        "mfu",
        "accelerator_hours",
        "accelerator_hours_this_run",
    }
)

_SUBJECTS = ["the cat", "a dog", "the market", "our team", "the city council", "a small bird"]
_VERBS = ["sees", "likes", "reports on", "follows", "visits", "ignores"]
_OBJECTS = ["the river", "new prices", "the old house", "a quiet street", "the election", "fresh bread"]
_ENDINGS = ["today.", "every morning.", "after the rain.", "once again.", "in the north."]


def synthetic_documents(n: int, seed: int = 0) -> list[str]:
    """``n`` short documents of 3-8 grammatical sentences (deterministic for a seed)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sentences = [
            f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
            f"{rng.choice(_ENDINGS)}"
            for _ in range(rng.randint(3, 8))
        ]
        docs.append(" ".join(sentences))
    return docs


def make_token_data(
    directory: str | Path, docs: tuple[int, int, int] = (300, 40, 40), vocab_size: int = 300, seed: int = 0
) -> Path:
    """Write a tokenize-stage output folder into ``directory``; return it.

    ``docs``: documents in train / valid / test. ``vocab_size``: BPE vocabulary (>= 258).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    texts = dict(zip(SPLITS, (synthetic_documents(n, seed + i) for i, n in enumerate(docs)), strict=True))
    tokenizer = train_tokenizer(texts["train"], vocab_size)
    (directory / TOKENIZER_FILE).write_text(tokenizer.to_str(pretty=True) + "\n")
    dtype = token_dtype(tokenizer.get_vocab_size())
    for split in SPLITS:
        write_indexed_dataset(
            dataset_prefix(directory, split), encode_documents(tokenizer, texts[split]), dtype
        )
    return directory
