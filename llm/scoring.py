"""Pure classification and language-model metrics (stdlib only, no torch), hand-checkable.

Conventions follow scikit-learn's: a class that is never predicted has precision 0, a class that
never occurs has recall 0, and F1 is 0 when precision + recall is 0 (``zero_division=0``).
Macro-F1 is the unweighted mean of the per-class F1 over ``labels`` (all classes count equally,
whatever their support). Exact match and token F1 of generated answers follow SQuAD v1.1.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any


def _check(actual: Sequence[Any], predicted: Sequence[Any]) -> None:
    if len(actual) != len(predicted):
        raise ValueError(f"actual and predicted differ in length: {len(actual)} != {len(predicted)}")


def accuracy(actual: Sequence[Any], predicted: Sequence[Any]) -> float:
    """Share of positions where prediction == actual (0.0 for no examples)."""
    _check(actual, predicted)
    if not actual:
        return 0.0
    return sum(a == p for a, p in zip(actual, predicted, strict=True)) / len(actual)


def confusion_counts(
    actual: Sequence[Any], predicted: Sequence[Any], labels: Sequence[Any]
) -> list[list[int]]:
    """Confusion matrix ``m[i][j]`` = examples of class ``labels[i]`` predicted as ``labels[j]``.

    Rows are actual classes, columns predicted classes. A value outside ``labels`` is an error.
    """
    _check(actual, predicted)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for a, p in zip(actual, predicted, strict=True):
        if a not in index or p not in index:
            raise ValueError(f"label {a if a not in index else p!r} is not one of {list(labels)}")
        matrix[index[a]][index[p]] += 1
    return matrix


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def per_class(
    actual: Sequence[Any], predicted: Sequence[Any], labels: Sequence[Any]
) -> dict[str, dict[str, float]]:
    """{label: {precision, recall, f1, support}} for each label (keys are ``str(label)``)."""
    matrix = confusion_counts(actual, predicted, labels)
    out: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        predicted_i = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision, recall = _ratio(tp, predicted_i), _ratio(tp, support)
        out[str(label)] = {
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": support,
        }
    return out


def macro_f1(actual: Sequence[Any], predicted: Sequence[Any], labels: Sequence[Any] | None = None) -> float:
    """Unweighted mean of per-class F1 over ``labels`` (default: the sorted classes seen in either)."""
    if labels is None:
        labels = sorted(set(actual) | set(predicted))
    if not labels:
        return 0.0
    scores = per_class(actual, predicted, labels)
    return sum(s["f1"] for s in scores.values()) / len(labels)


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token), from a sum of per-token losses in nats."""
    if n_tokens <= 0:
        raise ValueError("perplexity needs at least one token")
    return math.exp(total_nll / n_tokens)


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> float:
    """ECE: the confidence range [0, 1] cut into ``bins`` equal-width bins (a confidence of exactly
    1.0 goes to the last bin); sum over bins of |accuracy - mean confidence| weighted by the bin's
    share of examples. 0 = perfectly calibrated; 0.0 for no examples."""
    _check(confidences, correct)
    if bins <= 0:
        raise ValueError("bins must be > 0")
    n = len(confidences)
    if not n:
        return 0.0
    sums = [[0, 0.0, 0.0] for _ in range(bins)]  # count, confidence sum, correct sum
    for c, ok in zip(confidences, correct, strict=True):
        b = min(int(c * bins), bins - 1)
        sums[b][0] += 1
        sums[b][1] += c
        sums[b][2] += 1.0 if ok else 0.0
    return sum(abs(s[2] - s[1]) / n for s in sums if s[0])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics (numpy's
    default); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# --- extractive QA (SQuAD v1.1, Rajpurkar et al. 2016: the official evaluate script's rules) -----

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation removed, articles (a, an, the) removed,
    whitespace collapsed to single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answer: str) -> float:
    """1.0 when the normalised prediction equals the normalised answer, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(answer))


def token_f1(prediction: str, answer: str) -> float:
    """Token-level F1 of the normalised texts (tokens counted with multiplicity, as in SQuAD);
    0.0 when they share no token (1.0 when both normalise to nothing)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)
