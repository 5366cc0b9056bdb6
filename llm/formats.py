"""File names of the floor's on-disk formats (stdlib only, import-light).

- a tokenized corpus: ``tokenizer.json`` beside megatron-core indexed datasets named
  ``<split>_<source>_document.{bin,idx}``;
- a model folder (what finetune, compress and evaluate write, select copies, deploy bundles and the
  model server loads through ``llm.served.load_model``), of one of two kinds named by its
  ``classifier.json``'s ``kind`` (``model_kind``):

  - ``gpt-classifier`` (no ``kind`` key: what finetune and compress write): ``classifier.json``,
    ``model.safetensors``, ``tokenizer.json`` (``llm.classifier``);
  - ``tfidf-logreg`` (evaluate's TF-IDF + logistic regression baseline): ``classifier.json``,
    ``model.safetensors``, ``vocabulary.json`` (``llm.baseline``);

  only JSON and safetensors, never a pickle; ``model_files`` names a folder's files.

Stage outputs name their files through ``components.common.artifacts``, which builds on these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TOKENIZER_FILE = "tokenizer.json"

# A pretrained GPT: its shape and its megatron dist_checkpointing folder.
GPT_SHAPE_FILE = "model.json"
CHECKPOINT_DIR = "checkpoint"
# A generator folder (llm.generator): a pretrained-GPT folder + tokenizer + these settings.
GENERATOR_FILE = "generator.json"

# Megatron indexed datasets: one per split of each source.
TEXT_SOURCE = "text"  # the clean corpus
TASK_SOURCE = "task"  # the task's texts, for task-adaptive pretraining
SPLITS: tuple[str, ...] = ("train", "valid", "test")
TASK_SPLITS: tuple[str, ...] = ("train", "valid")  # pretrain reads these; the task's test never
INDEX_SUFFIXES: tuple[str, ...] = (".bin", ".idx")

# A model folder.
CONFIG_FILE = "classifier.json"
WEIGHTS_FILE = "model.safetensors"
VOCABULARY_FILE = "vocabulary.json"  # the TF-IDF baseline's terms, in feature-column order
GPT_CLASSIFIER = "gpt-classifier"  # the kind of a classifier.json without a "kind" key
TFIDF_LOGREG = "tfidf-logreg"  # the kind of the TF-IDF + logistic regression baseline
# The files that define a model of each kind; their bytes make its version (llm.served.model_version).
MODEL_FILES: tuple[str, ...] = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE)  # a gpt-classifier's
BASELINE_FILES: tuple[str, ...] = (CONFIG_FILE, WEIGHTS_FILE, VOCABULARY_FILE)  # a tfidf-logreg's
FILES_OF_KIND: dict[str, tuple[str, ...]] = {GPT_CLASSIFIER: MODEL_FILES, TFIDF_LOGREG: BASELINE_FILES}


def dataset_name(split: str, source: str = TEXT_SOURCE) -> str:
    """``<split>_<source>_document``: the megatron prefix's file name (no .bin/.idx)."""
    return f"{split}_{source}_document"


def dataset_prefix(directory: str | os.PathLike, split: str, source: str = TEXT_SOURCE) -> str:
    """The megatron path prefix of a split of a source (``<dir>/<split>_<source>_document``)."""
    return str(Path(directory) / dataset_name(split, source))


def dataset_files(split: str, source: str = TEXT_SOURCE) -> tuple[str, ...]:
    """The two files of one indexed dataset (``.bin`` and ``.idx``)."""
    return tuple(dataset_name(split, source) + suffix for suffix in INDEX_SUFFIXES)


def model_kind(directory: str | os.PathLike) -> str:
    """The kind of the model folder ``directory``: its ``classifier.json``'s ``kind``
    (``gpt-classifier`` when absent). Raises FileNotFoundError when there is no classifier.json and
    ValueError naming the folder for a kind no loader knows."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE} (not a model folder)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    kind = config.get("kind", GPT_CLASSIFIER) if isinstance(config, dict) else None
    if kind not in FILES_OF_KIND:
        raise ValueError(f"{path}: unknown model kind {kind!r} (known: {', '.join(FILES_OF_KIND)})")
    return kind


def model_files(directory: str | os.PathLike) -> tuple[str, ...]:
    """The names of the files that make up the model folder ``directory`` (by ``model_kind``):
    what select copies, deploy bundles and ``llm.served.model_version`` hashes."""
    return FILES_OF_KIND[model_kind(directory)]
