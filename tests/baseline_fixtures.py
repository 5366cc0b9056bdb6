"""A TF-IDF + logistic regression baseline folder (``llm.baseline``) on noisy review-like text.

``review_texts`` mixes praise and complaint words into shared filler with casing, punctuation,
accents, digits and one-letter words, and flips a fifth of the labels, so the fitted model gives
varied probabilities rather than only 0 and 1. ``fit_baseline`` fits the pipeline the evaluate
stage fits (``components.evaluate.core.train_baseline``: word 1-2-grams, min_df 2, sublinear tf,
liblinear C = 4); ``make_baseline_dir`` saves it as a model folder.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.task_fixtures import FILLER, NEGATIVE, POSITIVE

EXTRA = ["Café", "naïve", "2024", "x", "I", "it's", "THE", "Plot!", "story,", "—", "très", "ÜBER"]

# Held-out texts that probe the analyzer: empty, no words, unknown words only, repeats (sublinear
# tf), one-letter words (not words for the token pattern), case, punctuation, accents, long text.
EDGE_TEXTS = [
    "",
    "   ",
    "!!! ??? ...",
    "zzz qqq unknownword",
    "good good good good good good",
    "a b c d e",
    "GREAT film, Great music; great!",
    "the film was not good but not bad",
    "Café naïve très ÜBER",
    " ".join(["boring"] * 40 + ["wonderful"] * 3),
]


def review_texts(n: int, seed: int = 0, flip: float = 0.2) -> tuple[list[str], list[str]]:
    """``n`` texts and their labels ("negative" / "positive"), a ``flip`` share of labels flipped."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        positive = rng.random() < 0.5
        words = [rng.choice(FILLER + EXTRA) for _ in range(rng.randint(2, 14))]
        cue = POSITIVE if positive else NEGATIVE
        for _ in range(rng.randint(0, 3)):
            word = rng.choice(cue + (NEGATIVE if positive else POSITIVE)[:1])
            words.insert(rng.randrange(len(words) + 1), word.upper() if rng.random() < 0.2 else word)
        texts.append(" ".join(words))
        labels.append("positive" if positive != (rng.random() < flip) else "negative")
    return texts, labels


def fit_baseline(texts: list[str], labels: list[str], **settings: Any) -> Any:
    """A fitted TfidfVectorizer + LogisticRegression pipeline; ``settings`` go to the vectorizer
    (``C`` and ``solver`` to the regression)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    c, solver = settings.pop("C", 4.0), settings.pop("solver", "liblinear")
    vectorizer = TfidfVectorizer(**{"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True, **settings})
    model = LogisticRegression(C=c, solver=solver, max_iter=1000, random_state=0)
    return make_pipeline(vectorizer, model).fit(texts, labels)


def make_baseline_dir(directory: str | Path, n: int = 400, seed: int = 0) -> Path:
    """A tfidf-logreg model folder fitted on ``review_texts(n, seed)``."""
    from llm.baseline import save_baseline

    texts, labels = review_texts(n, seed)
    save_baseline(fit_baseline(texts, labels), directory)
    return Path(directory)
