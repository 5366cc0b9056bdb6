"""A tiny classifier folder in the finetune stage's format, for the server tests and benchmarks.

``make_model_dir(dir)`` trains a small BPE tokenizer on sentiment-like text, builds the real
classifier (megatron GPT backbone + pooling + linear head, ``llm.classifier``) with a
tiny, untrained shape, and saves ``classifier.json``, ``model.safetensors`` and ``tokenizer.json``
with the finetune stage's own writer. The server loads it with the same ``load_classifier`` as a
real model; only the weights are untrained, so its predictions are arbitrary but deterministic.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.task_fixtures import TINY_SHAPE, make_tokenized


def make_model_dir(directory: str | Path, seed: int = 0, **shape: Any) -> Path:
    import torch

    from llm.classifier import TOKENIZER_FILE, ClassifierConfig, build_classifier, save_classifier
    from llm.gpt import GPTShape, megatron_runtime
    from llm.tokenizer import load_tokenizer, special_ids

    directory = Path(directory)
    tokenized = make_tokenized(directory.parent / f"{directory.name}-tokenized", seed=seed)
    tokenizer = load_tokenizer(tokenized / TOKENIZER_FILE)
    vocab = tokenizer.get_vocab_size()
    gpt = GPTShape(vocab_size=-(-vocab // 64) * 64, **{**TINY_SHAPE, **shape})
    ids = special_ids(tokenizer)
    config = ClassifierConfig(
        gpt=gpt,
        labels=["negative", "positive"],
        max_length=32,
        pooling="mean",
        pad_id=ids["pad_id"],
        eod_id=ids["eod_id"],
    )
    with megatron_runtime(seed=seed):
        torch.manual_seed(seed)
        save_classifier(build_classifier(config), directory)
    shutil.copyfile(tokenized / TOKENIZER_FILE, directory / TOKENIZER_FILE)
    return directory


def shared_model_dir(tmp_path_factory: Any) -> Path:
    """One tiny model folder per test session, built by the first test that asks (the model build
    imports megatron and takes seconds; the server tests only need some valid model)."""
    directory = Path(tmp_path_factory.getbasetemp()) / "serving-tiny-model" / "model"
    if not (directory / "model.safetensors").exists():
        make_model_dir(directory)
    return directory
