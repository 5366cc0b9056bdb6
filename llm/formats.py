"""File names of the floor's on-disk formats (stdlib only, import-light).

- a tokenized corpus: ``tokenizer.json`` beside megatron-core indexed datasets named
  ``<split>_<source>_document.{bin,idx}``;
- a model folder (what finetune and compress write, select copies, deploy bundles and the model
  server loads): ``classifier.json``, ``model.safetensors``, ``tokenizer.json``.

Stage outputs name their files through ``components.common.artifacts``, which builds on these.
"""

from __future__ import annotations

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
# The files that define a model; their bytes make its version (llm.served.model_version).
MODEL_FILES: tuple[str, ...] = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE)


def dataset_name(split: str, source: str = TEXT_SOURCE) -> str:
    """``<split>_<source>_document``: the megatron prefix's file name (no .bin/.idx)."""
    return f"{split}_{source}_document"


def dataset_prefix(directory: str | os.PathLike, split: str, source: str = TEXT_SOURCE) -> str:
    """The megatron path prefix of a split of a source (``<dir>/<split>_<source>_document``)."""
    return str(Path(directory) / dataset_name(split, source))


def dataset_files(split: str, source: str = TEXT_SOURCE) -> tuple[str, ...]:
    """The two files of one indexed dataset (``.bin`` and ``.idx``)."""
    return tuple(dataset_name(split, source) + suffix for suffix in INDEX_SUFFIXES)
