"""Tiny inputs for the finetune / evaluate tests: a separable sentiment task, its tokenizer, a tiny
pretrained GPT checkpoint in pretrain's output format, and a params.yaml for CLI tests.

The task is "good ..." vs "bad ...": positive texts carry praise words, negative texts complaint
words, both mixed with shared filler, so a classifier must look at the right tokens to beat the
majority class, and a working one does so within a few epochs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import yaml

from components.common.params import SECTIONS
from components.tokenize.core import (
    SPLITS,
    TOKENIZER_FILE,
    dataset_prefix,
    encode_documents,
    token_dtype,
    train_tokenizer,
    write_indexed_dataset,
)

POSITIVE = ["good", "great", "wonderful", "excellent", "lovely", "brilliant"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "poor", "dull"]
FILLER = ["the", "film", "was", "a", "story", "with", "actors", "and", "music", "plot", "it", "very"]

TINY_SHAPE: dict[str, Any] = {
    "seq_length": 32,
    "num_layers": 2,
    "hidden_size": 32,
    "num_attention_heads": 4,
    "ffn_hidden_size": 64,
}


def sentiment_text(rng: random.Random, positive: bool) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(3, 10))]
    cue = POSITIVE if positive else NEGATIVE
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cue))
    return " ".join(words)


def make_task(
    path: str | Path, counts: dict[str, int] | None = None, seed: int = 0, positive_share: float = 0.6
) -> Path:
    """Write task.jsonl {id, text, label, split}; ``counts`` examples per split; ~60% positive."""
    counts = counts or {"train": 240, "valid": 60, "test": 60}
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for split, n in counts.items():
            for i in range(n):
                positive = rng.random() < positive_share
                record = {
                    "id": f"{split}-{i:04d}",
                    "text": sentiment_text(rng, positive),
                    "label": "positive" if positive else "negative",
                    "split": split,
                }
                f.write(json.dumps(record) + "\n")
    return path


def make_tokenized(directory: str | Path, vocab_size: int = 300, seed: int = 0) -> Path:
    """A tokenize-stage folder (tokenizer.json + indexed datasets) over sentiment-like text."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    texts = {
        split: [" ".join(sentiment_text(rng, rng.random() < 0.5) for _ in range(4)) for _ in range(n)]
        for split, n in zip(SPLITS, (200, 30, 30), strict=True)
    }
    tokenizer = train_tokenizer(texts["train"], vocab_size)
    (directory / TOKENIZER_FILE).write_text(tokenizer.to_str(pretty=True) + "\n")
    dtype = token_dtype(tokenizer.get_vocab_size())
    for split in SPLITS:
        write_indexed_dataset(
            dataset_prefix(directory, split), encode_documents(tokenizer, texts[split]), dtype
        )
    return directory


def make_pretrained(directory: str | Path, tokenized: str | Path, seed: int = 0, **shape: Any) -> Path:
    """A pretrain-stage folder (model.json + dist checkpoint) holding a tiny, untrained GPT whose
    embedding covers the tokenizer's vocabulary (padded up to a multiple of 64)."""
    from llm.gpt import (
        CHECKPOINT_DIR,
        MODEL_FILE,
        GPTShape,
        build_gpt,
        megatron_runtime,
        save_checkpoint,
    )
    from llm.tokenizer import load_tokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = load_tokenizer(tokenized).get_vocab_size()
    gpt_shape = GPTShape(vocab_size=-(-vocab // 64) * 64, **{**TINY_SHAPE, **shape})
    with megatron_runtime(seed=seed):
        save_checkpoint(build_gpt(gpt_shape), directory / CHECKPOINT_DIR)
    gpt_shape.to_json(directory / MODEL_FILE)
    return directory


FINETUNE_FAST = {"epochs": 3, "batch_size": 16, "lr": 1e-3, "head_lr": 3e-3, "max_length": 32}


def make_finetuned(
    root: str | Path, counts: dict[str, int] | None = None, finetune: dict[str, Any] | None = None
) -> Path:
    """``root`` with the inputs of the stages after finetune: ``tokenize/``, ``pretrain/`` (tiny,
    untrained GPT), ``task.jsonl`` (``counts`` per split) and ``finetune/`` (trained with the
    ``finetune`` params, default ``FINETUNE_FAST``)."""
    from components.common.params import from_dict
    from components.finetune.core import run
    from components.finetune.params import Params

    root = Path(root)
    tokenized = make_tokenized(root / "tokenize")
    pretrained = make_pretrained(root / "pretrain", tokenized)
    task = make_task(root / "task.jsonl", counts)
    params = from_dict(Params, finetune if finetune is not None else FINETUNE_FAST, "finetune")
    run(str(pretrained), str(tokenized), str(task), str(root / "finetune"), params)
    return root


def write_params(path: str | Path, **sections: dict[str, Any]) -> Path:
    """A params.yaml with every stage's defaults ({}) except the ``sections`` given."""
    raw = {stage: dict(sections.get(stage, {})) for stage in SECTIONS}
    path = Path(path)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def make_generator(directory: str | Path, tokenized: str | Path, seed: int = 0, **config: Any) -> Path:
    """A generator folder (llm.generator): ``make_pretrained`` + the tokenizer + generator.json
    (``config`` overrides; default max_new_tokens 8, stop at a newline, QA's choice template)."""
    import shutil

    from llm.generator import write_generator_config

    directory = make_pretrained(directory, tokenized, seed=seed)
    shutil.copy(Path(tokenized) / TOKENIZER_FILE, Path(directory) / TOKENIZER_FILE)
    write_generator_config(
        directory,
        **{"task": "qa", "max_new_tokens": 8, "stop": ["\n"], "choice_template": " {choice}\n", **config},
    )
    return Path(directory)
