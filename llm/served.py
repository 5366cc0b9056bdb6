"""The served model: a model folder loaded once, its version, and a batch ``predict``.

A model folder (``llm.formats``) is one of two kinds, named by its ``classifier.json``:

- ``gpt-classifier``: the megatron GPT classifier finetune and compress write (``classifier.json``,
  ``model.safetensors``, ``tokenizer.json``; ``llm.classifier``);
- ``tfidf-logreg``: the TF-IDF + logistic regression baseline evaluate writes (``classifier.json``,
  ``model.safetensors``, ``vocabulary.json``; ``llm.baseline``, numpy only: no torch, no megatron,
  no scikit-learn).

``load_model(folder)`` loads either through the one ``Classifier`` interface, by path only, so any
folder in either format can be served. The version is a content hash of the folder's model files
(``llm.formats.model_files``): the same weights always report the same version, whatever the
folder is called, and a retrained model never reuses a version.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llm.formats import (
    MODEL_FILES,  # noqa: F401 (a gpt-classifier's files; imported from here too)
    TFIDF_LOGREG,
    model_files,
    model_kind,
)

VERSION_CHARS = 12  # hex digits of the sha256 kept in the version string


class Classifier(Protocol):
    """What the server needs from a loaded model (llm.classifier.TextClassifier,
    llm.baseline.TfidfLogreg)."""

    @property
    def labels(self) -> list[str]: ...

    def token_counts(self, texts: Sequence[str]) -> list[int]: ...

    def predict(self, texts: Sequence[str], batch_size: int = ...) -> tuple[list[str], list[float]]: ...


@dataclass(frozen=True)
class Predictions:
    """Results for a batch of texts, in input order: label, its probability (0-1) and the
    number of tokens the model read (the GPT classifier: BPE tokens after truncation to its max
    length; the TF-IDF baseline: the words its analyzer finds, the whole text)."""

    labels: list[str]
    scores: list[float]
    tokens: list[int]


def model_version(directory: str | os.PathLike) -> str:
    """``<first 12 hex of sha256>`` over the names and bytes of the model files of ``directory``
    (``llm.formats.model_files``: those of its kind).

    Raises FileNotFoundError naming the first missing file, ValueError for an unknown kind.
    """
    directory = Path(directory)
    names = model_files(directory)
    digest = hashlib.sha256()
    for name in names:
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: no {name} (a model folder holds {', '.join(names)})")
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
        tokens = list(self.classifier.token_counts(texts))
        labels, scores = self.classifier.predict(list(texts), batch_size=self.batch_size)
        return Predictions(list(labels), [float(s) for s in scores], tokens)


def load_model(directory: str | os.PathLike, batch_size: int = 64, cpu_threads: int = 0) -> ServedModel:
    """Load the model folder ``directory``, of either kind (``llm.formats.model_kind``), for serving.

    A ``gpt-classifier``: ``cpu_threads`` > 0 fixes torch's intra-op threads (process-wide); starts
    the single-process megatron runtime the GPT needs (it lives until the process exits). A
    ``tfidf-logreg`` baseline: numpy and safetensors only (``cpu_threads`` does not apply).
    """
    version = model_version(directory)  # fails fast, with the folder named, on a wrong path
    if model_kind(directory) == TFIDF_LOGREG:
        from llm.baseline import load_baseline

        return ServedModel(load_baseline(directory), version, batch_size)
    import torch

    from llm.classifier import load_classifier

    if cpu_threads > 0:
        torch.set_num_threads(cpu_threads)
    classifier: Any = load_classifier(directory)
    return ServedModel(classifier, version, batch_size)
