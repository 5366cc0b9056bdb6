"""The TF-IDF + logistic regression baseline as a model folder: saved from a fitted scikit-learn
pipeline, served with numpy alone.

A ``tfidf-logreg`` model folder (``llm.formats``) holds only JSON and safetensors, never a pickle:

- ``classifier.json``: ``kind`` ``tfidf-logreg``, the labels (the probability columns' order), the
  analyzer's settings (lowercase, token pattern, word n-gram range), the TF-IDF settings (sublinear
  tf, idf, norm), the probability rule and how it was trained (``BaselineConfig``);
- ``vocabulary.json``: ``{"terms": [...]}``, the vectorizer's vocabulary in feature-column order
  (``min_df`` and any ``max_features`` are already applied: only the kept terms are listed);
- ``model.safetensors``: float64 ``idf`` (V,), ``coef`` (C, V) and ``intercept`` (C,), C = 1 for
  two classes, else one row per class.

``TfidfLogreg`` re-implements scikit-learn's ``TfidfVectorizer.transform`` and
``LogisticRegression.predict`` / ``predict_proba`` (1.9) exactly, for the settings ``save_baseline``
accepts (it refuses any other, naming it): the text lowercased (``str.lower``), words as the
matches of the token pattern (``re.findall``), word n-grams joined by one space, counts of the
vocabulary's terms, tf = 1 + ln(count) when sublinear, times idf, the row divided by its l2 (or
l1) norm, then decision = x · coef^T + intercept; two classes: P(second) = 1 / (1 + e^-decision),
the label the second when decision > 0; more: softmax over the decisions, the label their argmax.
scikit-learn is needed to train, never to load or serve.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llm.formats import CONFIG_FILE, TFIDF_LOGREG, VOCABULARY_FILE, WEIGHTS_FILE

FORMAT = 1  # version of this folder layout (classifier.json's "format")
NORMS = ("l2", "l1", "")  # row norms the loader applies ("" = none)
PROBABILITIES = ("logistic", "softmax")  # two classes: sigmoid of one decision; more: softmax


@dataclass(frozen=True)
class BaselineConfig:
    """``classifier.json`` of a ``tfidf-logreg`` folder: everything besides the vocabulary and tensors."""

    labels: list[str]  # class names, in the order of the probability columns (scikit-learn's classes_)
    features: int  # vocabulary size = columns of coef and entries of idf (terms)
    ngram_range: tuple[int, int]  # word n-gram lengths, from..to inclusive (words)
    token_pattern: str  # regular expression whose matches are the words (scikit-learn's default)
    lowercase: bool  # str.lower() the text before finding words (flag)
    sublinear_tf: bool  # tf = 1 + ln(count) instead of the count (flag)
    use_idf: bool  # multiply tf by the saved idf (flag)
    norm: str  # row normalisation after idf: "l2", "l1" or "" for none (name)
    probability: str  # "logistic" (two classes, one decision row) or "softmax" (name)
    trained_with: dict[str, Any] = field(default_factory=dict)  # the estimators' settings (provenance only)
    kind: str = TFIDF_LOGREG  # the model folder's kind (llm.formats.model_kind)
    format: int = FORMAT  # the layout version (integer)

    def __post_init__(self) -> None:
        if self.kind != TFIDF_LOGREG:
            raise ValueError(f"baseline config: kind {self.kind!r} is not {TFIDF_LOGREG!r}")
        if self.format != FORMAT:
            raise ValueError(f"baseline config: format {self.format!r}, this loader reads {FORMAT}")
        low, high = self.ngram_range
        if not 1 <= low <= high:
            raise ValueError(f"baseline config: ngram_range {list(self.ngram_range)} (need 1 <= from <= to)")
        if re.compile(self.token_pattern).groups > 1:
            raise ValueError("baseline config: token_pattern has more than one capturing group")
        if self.norm not in NORMS:
            raise ValueError(f"baseline config: norm {self.norm!r} (known: {NORMS})")
        if self.probability not in PROBABILITIES:
            raise ValueError(f"baseline config: probability {self.probability!r} (known: {PROBABILITIES})")
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"baseline config: labels {self.labels} (need two or more distinct)")
        if (self.probability == "logistic") != (len(self.labels) == 2):
            raise ValueError(
                f"baseline config: {self.probability} probabilities with {len(self.labels)} labels"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format": self.format,
            "labels": list(self.labels),
            "features": self.features,
            "ngram_range": list(self.ngram_range),
            "token_pattern": self.token_pattern,
            "lowercase": self.lowercase,
            "sublinear_tf": self.sublinear_tf,
            "use_idf": self.use_idf,
            "norm": self.norm,
            "probability": self.probability,
            "trained_with": dict(self.trained_with),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineConfig:
        return cls(**{**data, "ngram_range": tuple(data["ngram_range"])})


def _check(condition: bool, setting: str) -> None:
    if not condition:
        raise ValueError(
            f"save_baseline: {setting} is not supported (llm.baseline re-implements only the rest)"
        )


def _scalars(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    """The JSON-scalar attributes ``names`` of ``obj`` (None, bool, int, float, str), for provenance."""
    out = {}
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, bool | int | float | str):
            out[name] = value
    return out


def save_baseline(pipeline: Any, directory: str | os.PathLike) -> BaselineConfig:
    """Write the fitted scikit-learn pipeline ``pipeline`` (a ``TfidfVectorizer`` then a
    ``LogisticRegression``, as ``make_pipeline`` builds it) as a ``tfidf-logreg`` folder into
    ``directory`` (created; the caller makes it atomic). Reads the estimators' fitted attributes
    only: scikit-learn is not imported here. Raises ValueError naming any setting ``TfidfLogreg``
    does not re-implement (char analyzers, accent stripping, stop words, custom callables, binary
    tf, float32, OvR multiclass probabilities)."""
    from safetensors.numpy import save_file

    steps = getattr(pipeline, "steps", None)
    _check(steps is not None and len(steps) == 2, "a pipeline other than (vectorizer, classifier)")
    vectorizer, model = steps[0][1], steps[1][1]
    _check(
        getattr(vectorizer, "analyzer", None) == "word", f"analyzer={getattr(vectorizer, 'analyzer', None)!r}"
    )
    _check(getattr(vectorizer, "input", "content") == "content", f"input={vectorizer.input!r}")
    for name in ("preprocessor", "tokenizer", "stop_words", "strip_accents"):
        _check(getattr(vectorizer, name, None) is None, f"{name}={getattr(vectorizer, name, None)!r}")
    _check(not getattr(vectorizer, "binary", False), "binary=True")
    _check(
        np.dtype(getattr(vectorizer, "dtype", np.float64)) == np.float64,
        f"dtype={np.dtype(vectorizer.dtype).name}",
    )
    norm = vectorizer.norm or ""
    _check(norm in NORMS, f"norm={vectorizer.norm!r}")
    vocabulary: dict[str, int] = vectorizer.vocabulary_
    terms = [""] * len(vocabulary)
    for term, column in vocabulary.items():
        terms[int(column)] = term
    _check(sorted(int(c) for c in vocabulary.values()) == list(range(len(terms))), "a vocabulary with gaps")
    _check(all(isinstance(c, str) for c in model.classes_), f"non-string classes {list(model.classes_)}")
    labels = [str(c) for c in model.classes_]
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64).reshape(-1)
    if intercept.size == 1 and coef.shape[0] > 1:
        intercept = np.repeat(intercept, coef.shape[0])
    rows = 1 if len(labels) == 2 else len(labels)
    _check(coef.shape == (rows, len(terms)), f"coef of shape {coef.shape} for {len(labels)} classes")
    _check(
        getattr(model, "multi_class", "auto") in ("auto", "multinomial", "deprecated") or rows == 1,
        "multi_class='ovr'",
    )
    config = BaselineConfig(
        labels=labels,
        features=len(terms),
        ngram_range=(int(vectorizer.ngram_range[0]), int(vectorizer.ngram_range[1])),
        token_pattern=str(vectorizer.token_pattern),
        lowercase=bool(vectorizer.lowercase),
        sublinear_tf=bool(vectorizer.sublinear_tf),
        use_idf=bool(vectorizer.use_idf),
        norm=norm,
        probability="logistic" if rows == 1 else "softmax",
        trained_with={
            "vectorizer": {
                "class": type(vectorizer).__name__,
                **_scalars(vectorizer, ("min_df", "max_df", "max_features", "smooth_idf")),
            },
            "classifier": {
                "class": type(model).__name__,
                **_scalars(
                    model, ("C", "penalty", "solver", "max_iter", "class_weight", "intercept_scaling")
                ),
            },
        },
    )
    tensors = {"coef": np.ascontiguousarray(coef), "intercept": np.ascontiguousarray(intercept)}
    # Without idf the tensor is all ones: stored anyway, so every folder has the same three tensors.
    idf = np.asarray(vectorizer.idf_, dtype=np.float64) if config.use_idf else np.ones(len(terms))
    tensors["idf"] = np.ascontiguousarray(idf)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(
        json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    # One term a line: readable, and a diff of two vocabularies shows the terms that changed.
    (directory / VOCABULARY_FILE).write_text(
        json.dumps({"terms": terms}, ensure_ascii=False, indent=0) + "\n", encoding="utf-8"
    )
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"kind": TFIDF_LOGREG})
    os.chmod(directory / WEIGHTS_FILE, 0o644)
    return config


class TfidfLogreg:
    """A loaded ``tfidf-logreg`` folder: ``predict(texts) -> (labels, scores)`` as the server wants,
    with numpy only (see the module doc for the arithmetic)."""

    def __init__(
        self,
        config: BaselineConfig,
        terms: Sequence[str],
        idf: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
    ):
        rows = 1 if config.probability == "logistic" else len(config.labels)
        if len(terms) != config.features or idf.shape != (config.features,):
            raise ValueError(
                f"baseline: {len(terms)} terms and idf {idf.shape} for {config.features} features"
            )
        if coef.shape != (rows, config.features) or intercept.shape != (rows,):
            raise ValueError(
                f"baseline: coef {coef.shape} / intercept {intercept.shape}, expected ({rows}, {config.features}) / ({rows},)"
            )
        self.config = config
        self.vocabulary = {term: i for i, term in enumerate(terms)}
        if len(self.vocabulary) != len(terms):
            raise ValueError("baseline: the vocabulary repeats a term")
        self.idf = idf.astype(np.float64)
        self.coef = np.ascontiguousarray(coef.astype(np.float64).T)  # (V, C): one row gathered per term
        self.intercept = intercept.astype(np.float64)
        self._words = re.compile(config.token_pattern).findall

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    def words(self, text: str) -> list[str]:
        """The words of ``text``: the token pattern's matches in the (lowercased) text."""
        return self._words(text.lower() if self.config.lowercase else text)

    def analyze(self, text: str) -> list[str]:
        """The n-grams of ``text`` in scikit-learn's order: the words (when n-grams start at 1), then
        the 2-grams, 3-grams ... up to ``ngram_range[1]``, each its words joined by one space."""
        words = self.words(text)
        low, high = self.config.ngram_range
        grams = list(words) if low == 1 else []
        for n in range(max(low, 2), min(high, len(words)) + 1):
            grams.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
        return grams

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Words per text (the token pattern's matches, before n-grams and before the vocabulary
        drops unknown ones): what the server counts as the tokens a request cost. The model reads
        the whole text: nothing is truncated."""
        return [len(self.words(t)) for t in texts]

    def features(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The TF-IDF rows of ``texts`` in coordinate form: (row, column, value) per stored entry,
        rows in order and each row's columns ascending (scikit-learn's sorted CSR order); only the
        vocabulary's terms."""
        columns: list[int] = []
        counts: list[int] = []
        lengths: list[int] = []
        for text in texts:
            found = Counter(c for c in map(self.vocabulary.get, self.analyze(text)) if c is not None)
            ordered = sorted(found)
            columns.extend(ordered)
            counts.extend(found[c] for c in ordered)
            lengths.append(len(ordered))
        rows = np.repeat(np.arange(len(texts)), lengths)
        column = np.array(columns, dtype=np.int64)
        values = np.array(counts, dtype=np.float64)
        if self.config.sublinear_tf:
            values = np.log(values) + 1.0
        if self.config.use_idf:
            values = values * self.idf[column]
        if self.config.norm:
            per_row = values * values if self.config.norm == "l2" else np.abs(values)
            norms = np.bincount(rows, weights=per_row, minlength=len(texts))
            norms = np.sqrt(norms) if self.config.norm == "l2" else norms
            norms[norms == 0] = 1.0  # an empty row stays zero (as scikit-learn's normalize)
            values = values / norms[rows]
        return rows, column, values

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """The linear model's decisions: (N,) for two classes, else (N, C)."""
        rows, column, values = self.features(texts)
        weighted = self.coef[column] * values[:, None]  # (entries, C)
        # float64 by hand: bincount of no entries at all (no known term in any text of the call)
        # gives int64 zeros, which would make ``+= intercept`` fail.
        decisions = np.stack(
            [
                np.bincount(rows, weights=weighted[:, k], minlength=len(texts))
                for k in range(weighted.shape[1])
            ],
            axis=1,
        ).astype(np.float64, copy=False)
        decisions += self.intercept
        return decisions[:, 0] if self.config.probability == "logistic" else decisions

    def _probabilities(self, decisions: np.ndarray) -> np.ndarray:
        if self.config.probability == "logistic":
            with np.errstate(over="ignore"):  # e^-d overflows to inf for a very negative d: P = 0
                positive = 1.0 / (1.0 + np.exp(-decisions))
            return np.stack([1.0 - positive, positive], axis=1)
        shifted = np.exp(decisions - decisions.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities (N, K), columns in ``labels`` order."""
        return self._probabilities(self.decision_function(texts))

    def predict(self, texts: Sequence[str], batch_size: int = 128) -> tuple[list[str], list[float]]:
        """Predicted label per text (scikit-learn's ``predict``) and its probability (0-1).
        ``batch_size``: texts scored together (bounds the memory of one call)."""
        if not texts:
            return [], []
        texts, step = list(texts), max(1, batch_size)
        decisions = np.concatenate(
            [self.decision_function(texts[i : i + step]) for i in range(0, len(texts), step)]
        )
        proba = self._probabilities(decisions)
        logistic = self.config.probability == "logistic"
        index = (decisions > 0).astype(int) if logistic else decisions.argmax(axis=1)
        return [self.config.labels[i] for i in index], [float(proba[r, i]) for r, i in enumerate(index)]


def load_baseline(directory: str | os.PathLike) -> TfidfLogreg:
    """Load the ``tfidf-logreg`` folder ``directory`` (JSON and safetensors only)."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    config = BaselineConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8")))
    terms = json.loads((directory / VOCABULARY_FILE).read_text(encoding="utf-8"))["terms"]
    tensors = load_file(str(directory / WEIGHTS_FILE))
    missing = sorted({"idf", "coef", "intercept"} - set(tensors))
    if missing:
        raise ValueError(f"{directory / WEIGHTS_FILE}: no {', '.join(missing)} tensor")
    return TfidfLogreg(config, terms, tensors["idf"], tensors["coef"], tensors["intercept"])


def parameters(config: BaselineConfig) -> int:
    """Learnt weights of the linear model (coefficients and intercepts; the idf is a statistic)."""
    rows = 1 if config.probability == "logistic" else len(config.labels)
    return rows * config.features + rows
