"""The served model: a classifier folder loaded once, its version, and a batch ``predict``.

A model folder is what the finetune stage writes (and what the model-selection export copies):
``classifier.json``, ``model.safetensors``, ``tokenizer.json``. It is loaded by path only, so any
folder in that format can be served. The version is a content hash of those files: the same
weights always report the same version, whatever the folder is called, and a retrained model
never reuses a version.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llm.formats import MODEL_FILES

# The files that define a model; their bytes make the version.
VERSION_CHARS = 12  # hex digits of the sha256 kept in the version string


class Classifier(Protocol):
    """What the server needs from a loaded classifier (llm.classifier.TextClassifier)."""

    @property
    def labels(self) -> list[str]: ...

    def encode(self, texts: Sequence[str]) -> list[list[int]]: ...

    def predict(self, texts: Sequence[str], batch_size: int = ...) -> tuple[list[str], list[float]]: ...


@dataclass(frozen=True)
class Predictions:
    """Results for a batch of texts, in input order: label, its probability (0-1) and the
    number of tokens the model read (after truncation to its max length)."""

    labels: list[str]
    scores: list[float]
    tokens: list[int]


def model_version(directory: str | os.PathLike) -> str:
    """``<first 12 hex of sha256>`` over the names and bytes of ``MODEL_FILES`` in ``directory``.

    Raises FileNotFoundError naming the first missing file.
    """
    directory = Path(directory)
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: no {name} (a model folder holds {', '.join(MODEL_FILES)})")
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:VERSION_CHARS]


class ServedModel:
    """A classifier with its version; ``predict`` is called from one thread at a time."""

    def __init__(self, classifier: Classifier, version: str, batch_size: int = 64):
        self.classifier = classifier
        self.version = version
        self.batch_size = batch_size

    @property
    def labels(self) -> list[str]:
        return list(self.classifier.labels)

    def predict(self, texts: Sequence[str]) -> Predictions:
        """Label, score and token count per text. ``texts`` may be empty."""
        if not texts:
            return Predictions([], [], [])
        tokens = [len(ids) for ids in self.classifier.encode(texts)]
        labels, scores = self.classifier.predict(list(texts), batch_size=self.batch_size)
        return Predictions(list(labels), [float(s) for s in scores], tokens)


def load_model(directory: str | os.PathLike, batch_size: int = 64, cpu_threads: int = 0) -> ServedModel:
    """Load the classifier folder ``directory`` for serving.

    ``cpu_threads`` > 0 fixes torch's intra-op threads (process-wide). Starts the single-process
    megatron runtime the GPT needs (it lives until the process exits).
    """
    version = model_version(directory)  # fails fast, with the folder named, on a wrong path
    import torch

    from llm.classifier import load_classifier

    if cpu_threads > 0:
        torch.set_num_threads(cpu_threads)
    classifier: Any = load_classifier(directory)
    return ServedModel(classifier, version, batch_size)
