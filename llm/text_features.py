"""Simple numeric features of a text, compared between reference and current data.

Pure functions of one string (stdlib only), so they are unit-tested without Evidently. They catch
the cheap, obvious shifts (longer texts, a different writing style) next to Evidently's TF-IDF
text drift, and they make the report readable: "char_length drifted" says more than an AUC.
"""

from __future__ import annotations

# The feature columns, in report order. Stable names: they appear in metrics.json and reports.
FEATURE_COLUMNS: tuple[str, ...] = ("char_length", "word_count", "mean_word_length", "non_letter_share")


def char_length(text: str) -> int:
    """Number of characters (Unicode code points)."""
    return len(text)


def word_count(text: str) -> int:
    """Number of whitespace-separated words."""
    return len(text.split())


def mean_word_length(text: str) -> float:
    """Mean characters per whitespace-separated word; 0.0 for a text with no words."""
    words = text.split()
    return sum(len(w) for w in words) / len(words) if words else 0.0


def non_letter_share(text: str) -> float:
    """Share of non-whitespace characters that are not letters (digits, punctuation, symbols).

    Whitespace is left out so the value does not depend on spacing; 0.0 for an empty text.
    """
    chars = [c for c in text if not c.isspace()]
    return sum(not c.isalpha() for c in chars) / len(chars) if chars else 0.0


def text_features(text: str) -> dict[str, float]:
    """All features of one text, keyed by ``FEATURE_COLUMNS`` (floats, so Evidently sees numbers)."""
    return {
        "char_length": float(char_length(text)),
        "word_count": float(word_count(text)),
        "mean_word_length": mean_word_length(text),
        "non_letter_share": non_letter_share(text),
    }
