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


# --- generations: a prompt and the model's output ------------------------------------------------

# Word n-gram size of ``repeated_ngram_share`` by default: the cloze answers are one to three words,
# so bigrams already see "the the the" while a correct two-word entity scores 0.
REPETITION_NGRAM = 2


def repeated_ngram_share(text: str, n: int = REPETITION_NGRAM) -> float:
    """Share of the word ``n``-grams of ``text`` that repeat an earlier one (0..1): (count -
    distinct) / count over whitespace-separated, lower-cased words; 0.0 with fewer than ``n`` words.
    "a b a b a b" with n=2 has 5 bigrams, 2 distinct: 0.6. (Gopher's ``dup_ngram`` rules, Rae et
    al. 2021, count characters; a share of n-grams reads the same on texts of a few words.)"""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    words = text.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def is_empty(text: str) -> float:
    """1.0 when ``text`` is empty or only whitespace, else 0.0 (a float: its mean is the share)."""
    return 0.0 if text.strip() else 1.0


# The per-side features of a generation, in report order: the prompt and the output each get the
# text features under a ``prompt_`` / ``output_`` prefix; the output also its repetition and emptiness.
PROMPT_PREFIX, OUTPUT_PREFIX = "prompt_", "output_"
PROMPT_FEATURE_COLUMNS: tuple[str, ...] = tuple(PROMPT_PREFIX + c for c in FEATURE_COLUMNS)
OUTPUT_FEATURE_COLUMNS: tuple[str, ...] = (
    *(OUTPUT_PREFIX + c for c in FEATURE_COLUMNS),
    "output_repetition",
    "output_empty",
)


def generation_features(prompt: str, output: str, n: int = REPETITION_NGRAM) -> dict[str, float]:
    """The features of one generation, keyed by ``PROMPT_FEATURE_COLUMNS`` + ``OUTPUT_FEATURE_COLUMNS``
    (``n``: the word n-gram size of the output's repetition share)."""
    out = {PROMPT_PREFIX + k: v for k, v in text_features(prompt).items()}
    out.update({OUTPUT_PREFIX + k: v for k, v in text_features(output).items()})
    out["output_repetition"] = repeated_ngram_share(output, n)
    out["output_empty"] = is_empty(output)
    return out
