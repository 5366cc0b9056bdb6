"""Text descriptors that need NLTK data: sentiment (VADER) and the out-of-vocabulary word share.

They are the two NLTK-based descriptors of Evidently (``Sentiment``, ``OOVWordsPercentage``),
computed here with the same rules, because Evidently's versions call ``nltk.download`` on every
run, which reaches the network even when the data is present (it fetches NLTK's index first).
Here the data is installed at setup by ``scripts/fetch_nltk_data.py`` into ``.cache/nltk_data``
and found through ``NLTK_DATA``; nothing is ever downloaded. A missing resource is an error that
says how to install it.

- ``sentiment``: VADER's compound polarity score, -1 (negative) .. +1 (positive) (Hutto and
  Gilbert, ICWSM 2014), as Evidently's ``Sentiment``.
- ``oov_share``: share of words (runs of ASCII letters and digits; other characters are dropped,
  as Evidently does) whose lower-cased WordNet lemma is not in the Unix web2 word list (NLTK's
  ``words`` corpus), 0..1. Evidently's ``OOVWordsPercentage`` is the same number times 100.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Stable column names (they appear in reports, metrics.json and dashboards).
DESCRIPTOR_COLUMNS: tuple[str, ...] = ("sentiment", "oov_share")
NLTK_DATA_ENV = "NLTK_DATA"
DEFAULT_NLTK_DATA = Path(__file__).resolve().parent.parent / ".cache" / "nltk_data"
RESOURCES = ("sentiment/vader_lexicon.zip", "corpora/words", "corpora/wordnet")
INSTALL_HINT = "install it at setup with `python scripts/fetch_nltk_data.py` (part of `make setup`)"

_NON_WORD = re.compile(r"[^A-Za-z0-9\s]+")


class MissingNLTKData(RuntimeError):
    """NLTK data the descriptors need is not installed (it is never downloaded at run time)."""


def nltk_data_dir() -> Path:
    """The NLTK data folder: ``$NLTK_DATA`` (first entry) if set, else the repo's .cache/nltk_data."""
    value = os.environ.get(NLTK_DATA_ENV, "")
    return Path(value.split(os.pathsep)[0]) if value else DEFAULT_NLTK_DATA


def use_nltk_data() -> Path:
    """Point NLTK at the installed data and check every resource is there; return the folder.

    Sets ``NLTK_DATA`` when unset (NLTK reads it when first imported) and puts the folder first
    on ``nltk.data.path`` (for an NLTK imported earlier). Raises MissingNLTKData naming the
    missing resource.
    """
    folder = nltk_data_dir()
    os.environ.setdefault(NLTK_DATA_ENV, str(folder))
    import nltk

    if str(folder) not in nltk.data.path:
        nltk.data.path.insert(0, str(folder))
    for resource in RESOURCES:
        try:
            nltk.data.find(resource)
        except LookupError:
            raise MissingNLTKData(
                f"NLTK resource {resource!r} not found in {folder}: {INSTALL_HINT}"
            ) from None
    return folder


@functools.lru_cache(maxsize=1)
def _vader() -> Any:
    use_nltk_data()
    from nltk.sentiment.vader import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@functools.lru_cache(maxsize=1)
def _vocabulary() -> tuple[frozenset[str], Any]:
    use_nltk_data()
    from nltk.corpus import words
    from nltk.stem import WordNetLemmatizer

    lemmatizer = WordNetLemmatizer()
    return frozenset(words.words()), functools.lru_cache(maxsize=200_000)(lemmatizer.lemmatize)


def sentiment(text: str) -> float:
    """VADER compound score of ``text`` (-1..1); 0.0 for a text with no scored words."""
    return float(_vader().polarity_scores(text)["compound"])


def words_of(text: str) -> list[str]:
    """The words the OOV rule judges: non-alphanumeric ASCII characters dropped, split on space."""
    return _NON_WORD.sub("", text).split()


def oov_share(text: str) -> float:
    """Share of words (``words_of``) whose lower-cased lemma is not in the word list (0..1);
    0.0 for a text with no words."""
    tokens = words_of(text)
    if not tokens:
        return 0.0
    vocabulary, lemmatize = _vocabulary()
    return sum(lemmatize(t.lower()) not in vocabulary for t in tokens) / len(tokens)


def descriptor_values(texts: Sequence[str]) -> dict[str, list[float]]:
    """Every descriptor of every text, keyed by ``DESCRIPTOR_COLUMNS`` (lists in text order)."""
    return {"sentiment": [sentiment(t) for t in texts], "oov_share": [oov_share(t) for t in texts]}
