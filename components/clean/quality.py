"""Quality rules as pure functions: each returns None to keep, or a stable drop reason.

- ``gopher_quality``: Rae et al. 2021 ("Scaling Language Models: Methods, Analysis & Insights from
  Training Gopher"), Appendix A.1.1: word count, mean word length, symbol-to-word ratio, bullet and
  ellipsis lines, words with a letter, stop words. Reason ``gopher_quality:<rule>``.
- ``gopher_repetition``: the same paper, Table A1: repeated lines and paragraphs, the most frequent
  2/3/4-gram, repeated 5..10-grams. Reason ``gopher_repetition:<rule>``.
- ``c4_lines``: Raffel et al. 2020 ("Exploring the Limits of Transfer Learning with a Unified
  Text-to-Text Transformer"), Section 2.2: line rules that edit the text, document rules
  ``c4:lorem_ipsum``, ``c4:curly_bracket``, ``c4:too_few_sentences``.
- ``fineweb``: Penedo et al. 2024 ("The FineWeb Datasets"), Section 3.5: line punctuation, short
  lines, duplicated line characters, plus the list-page ratio of datatrove's FineWebQualityFilter.
  Reason ``fineweb:<rule>``.
- ``detect_language`` / ``language_filter``: CLD2 (pycld2), reason ``language:<code>``.
- ``outlier_features``: the per-document features whose corpus statistics decide ``outlier:<name>``.

Words are lower-cased runs of letters and digits (``textstats``); lines are the non-empty lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from components.clean.textstats import TextStats, ngram_hashes, word_hashes

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")  # Gopher's list
_STOP_SET = frozenset(int(word_hashes(w)[0][0]) for w in STOP_WORDS)
BULLETS = ("\u2022", "-", "*", "\u00b7", "\u2023", "\u25e6", "\u25aa", "\u2043")
ELLIPSES = ("...", "\u2026")
# Line ends that close a sentence (C4: period, exclamation, question mark, end quotation mark).
C4_TERMINAL = (".", "!", "?", '"', "'", "\u201d", "\u2019")
TERMINAL_PUNCT = (*C4_TERMINAL, "\u2026", "\u3002", "\uff01", "\uff1f", "\uff0e", ")")
C4_POLICY = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f]+[\"'\u201d\u2019)\]]*(?=\s|$)")


def nonempty_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


# --- Gopher quality -------------------------------------------------------------------------------


def gopher_quality(text: str, stats: TextStats, lines: list[str], cfg: Any) -> str | None:
    """Gopher quality rules (Rae et al. 2021, App. A.1.1); ``cfg`` is ``params.GopherQuality``."""
    n = stats.n_words
    if n < cfg.min_words or n > cfg.max_words:
        return "gopher_quality:word_count"
    mean_len = _ratio(stats.word_chars, n)
    if mean_len < cfg.min_mean_word_length or mean_len > cfg.max_mean_word_length:
        return "gopher_quality:mean_word_length"
    symbols = text.count("#") + text.count("...") + text.count("\u2026")
    if _ratio(symbols, n) > cfg.max_symbol_word_ratio:
        return "gopher_quality:symbol_ratio"
    if lines:
        bullets = sum(1 for line in lines if line.lstrip().startswith(BULLETS))
        if bullets / len(lines) > cfg.max_bullet_lines:
            return "gopher_quality:bullet_lines"
        ellipsis = sum(1 for line in lines if line.rstrip().endswith(ELLIPSES))
        if ellipsis / len(lines) > cfg.max_ellipsis_lines:
            return "gopher_quality:ellipsis_lines"
    if _ratio(stats.alpha_tokens, stats.n_tokens) < cfg.min_alpha_words:
        return "gopher_quality:alpha_words"
    if stop_word_count(stats) < cfg.min_stop_words:
        return "gopher_quality:stop_words"
    return None


def stop_word_count(stats: TextStats) -> int:
    """Distinct Gopher stop words in the text. Cached on ``stats``."""
    if "stop" not in stats.cache:
        stats.cache["stop"] = len(_STOP_SET.intersection(stats.word_hashes.tolist()))
    return stats.cache["stop"]


# --- Gopher repetition ----------------------------------------------------------------------------


def duplicates(items: list[str]) -> tuple[int, int]:
    """``(count, characters)`` of the items that repeat an earlier item."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def top_ngram_char_fraction(stats: TextStats, n: int) -> float:
    """Characters in the occurrences of the most frequent word n-gram / characters of the text.

    An n-gram's characters are its words plus the n-1 spaces between them; among equally frequent
    n-grams the one with the smallest hash counts (order-free, so deterministic). Cached on ``stats``.
    """
    key = ("top", n)
    if key not in stats.cache:
        stats.cache[key] = _top_ngram_char_fraction(stats, n)
    return stats.cache[key]


def _top_ngram_char_fraction(stats: TextStats, n: int) -> float:
    grams = ngram_hashes(stats.word_hashes, n, mix=False)
    if grams.size == 0:
        return 0.0
    ordered = np.sort(grams)
    change = np.empty(ordered.size, dtype=bool)
    change[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    counts = np.diff(starts, append=ordered.size)
    best = int(np.argmax(counts))
    top = int(counts[best])
    i = int(np.argmax(grams == ordered[starts[best]]))  # first occurrence
    p = stats.word_char_prefix
    return float(top * (p[i + n] - p[i] + n - 1)) / max(stats.n_chars, 1)


def dup_ngram_char_fraction(stats: TextStats, n: int) -> float:
    """Characters of the words covered by repeated occurrences (after the first) of word n-grams,
    over the characters of the text. Cached on ``stats``."""
    key = ("dup", n)
    if key not in stats.cache:
        stats.cache[key] = _dup_ngram_char_fraction(stats, n)
    return stats.cache[key]


def _dup_ngram_char_fraction(stats: TextStats, n: int) -> float:
    grams = ngram_hashes(stats.word_hashes, n, mix=False)
    if grams.size < 2:
        return 0.0
    order = np.argsort(grams, kind="stable")
    ordered = grams[order]
    later = np.empty(ordered.size, dtype=bool)  # a repeat of the previous equal hash
    later[0] = False
    np.equal(ordered[1:], ordered[:-1], out=later[1:])
    if not later.any():
        return 0.0
    starts = order[later]  # stable sort: every occurrence but the first of each n-gram
    w = stats.word_hashes.size
    cover = np.cumsum(np.bincount(starts, minlength=w + 1) - np.bincount(starts + n, minlength=w + 1))
    return float(stats.word_lengths[cover[:w] > 0].sum()) / max(stats.n_chars, 1)


TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)


def gopher_repetition(text: str, stats: TextStats, lines: list[str], cfg: Any) -> str | None:
    """Gopher repetition rules (Rae et al. 2021, Table A1); ``cfg`` is ``params.GopherRepetition``."""
    n_chars = max(len(text), 1)
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    if paragraphs:
        count, chars = duplicates(paragraphs)
        if count / len(paragraphs) > cfg.dup_para_frac:
            return "gopher_repetition:dup_para_frac"
        if chars / n_chars > cfg.dup_para_char_frac:
            return "gopher_repetition:dup_para_char_frac"
    if lines:
        count, chars = duplicates(lines)
        if count / len(lines) > cfg.dup_line_frac:
            return "gopher_repetition:dup_line_frac"
        if chars / n_chars > cfg.dup_line_char_frac:
            return "gopher_repetition:dup_line_char_frac"
    for n in TOP_NGRAMS:
        if top_ngram_char_fraction(stats, n) > getattr(cfg, f"top_{n}gram"):
            return f"gopher_repetition:top_{n}gram"
    # Words covered by a repeated (n+1)-gram are covered by a repeated n-gram, so the fractions fall
    # with n: once one is below every remaining limit, the longer n-grams cannot fail.
    limits = [getattr(cfg, f"dup_{n}gram") for n in DUP_NGRAMS]
    for k, n in enumerate(DUP_NGRAMS):
        frac = dup_ngram_char_fraction(stats, n)
        if frac > limits[k]:
            return f"gopher_repetition:dup_{n}gram"
        if frac <= min(limits[k:]):
            break
    return None


# --- C4 -------------------------------------------------------------------------------------------


def count_sentences(line: str) -> int:
    """Sentence ends (. ! ? ... followed by a space or the end), plus one for an unterminated tail."""
    n = len(_SENTENCE_END.findall(line))
    if not line.rstrip().endswith(TERMINAL_PUNCT):
        n += 1
    return n


def c4_lines(text: str, cfg: Any) -> tuple[str | None, str | None, int]:
    """C4 rules (Raffel et al. 2020, Sec. 2.2); ``cfg`` is ``params.C4``.

    Returns ``(new_text, None, removed_lines)`` to keep, or ``(None, reason, 0)`` to drop. Lines are
    removed for: a word longer than ``max_word_length``, no terminal punctuation (or ending in an
    ellipsis), fewer than ``min_words_per_line`` words, "javascript", a policy notice. Citation markers
    are cut out. Paragraph breaks between kept lines are kept.
    """
    lowered = text.lower()
    if cfg.lorem_ipsum and "lorem ipsum" in lowered:
        return None, "c4:lorem_ipsum", 0
    if cfg.curly_bracket and "{" in text:
        return None, "c4:curly_bracket", 0
    check_js = cfg.javascript_lines and "javascript" in lowered
    check_policy = cfg.policy_lines and any(p in lowered for p in C4_POLICY)
    out: list[str] = []
    removed = sentences = 0
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            if out and out[-1]:
                out.append("")
            continue
        if cfg.remove_citations and "[" in line:
            line = _CITATION.sub("", line).strip()
        # split(maxsplit=k) stops after k words: enough to know the line has k of them.
        keep = len(line.split(maxsplit=cfg.min_words_per_line)) >= cfg.min_words_per_line
        if keep and len(line) > cfg.max_word_length and max(map(len, line.split())) > cfg.max_word_length:
            keep = False
        if keep and cfg.terminal_punct_lines and (not line.endswith(C4_TERMINAL) or line.endswith("...")):
            keep = False
        if keep and (check_js or check_policy):
            low = line.lower()
            if (check_js and "javascript" in low) or (check_policy and any(p in low for p in C4_POLICY)):
                keep = False
        if keep:
            out.append(line)
            if sentences < cfg.min_sentences:  # counting further changes nothing
                sentences += count_sentences(line)
        else:
            removed += 1
    if sentences < cfg.min_sentences:
        return None, "c4:too_few_sentences", 0
    while out and not out[-1]:
        out.pop()
    return "\n".join(out), None, removed


# --- FineWeb --------------------------------------------------------------------------------------


def fineweb(text: str, stats: TextStats, lines: list[str], cfg: Any) -> str | None:
    """FineWeb rules (Penedo et al. 2024, Sec. 3.5); ``cfg`` is ``params.FineWeb``."""
    if not lines:
        return "fineweb:line_punct_ratio"
    ended = sum(1 for line in lines if line.rstrip().endswith(TERMINAL_PUNCT))
    if ended / len(lines) < cfg.min_line_punct_ratio:
        return "fineweb:line_punct_ratio"
    short = sum(1 for line in lines if len(line) <= cfg.short_line_chars)
    if short / len(lines) > cfg.max_short_line_ratio:
        return "fineweb:short_line_ratio"
    _, dup_chars = duplicates(lines)
    if dup_chars / max(len(text) - text.count("\n"), 1) > cfg.max_char_dup_ratio:
        return "fineweb:char_dup_ratio"
    if _ratio(text.count("\n"), stats.n_words) > cfg.max_newline_word_ratio:
        return "fineweb:list_ratio"
    return None


# --- language -------------------------------------------------------------------------------------

_REASON_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def detect_language(text: str, sample_chars: int) -> tuple[str, float]:
    """``(code, score)`` of the first ``sample_chars`` characters by CLD2.

    ``score`` is the share of the text in the top language (0-1); ``code`` is "unknown" when CLD2
    finds nothing reliable. CLD2 refuses a few code points (controls, noncharacters) that the
    cleanup already removed; any other refusal also gives "unknown".
    """
    import pycld2

    sample = text[:sample_chars]
    try:
        reliable, _, details = pycld2.detect(sample)
    except pycld2.error:
        return "unknown", 0.0
    name, code, percent, _ = details[0]
    if not reliable or code == "un" or name == "Unknown":
        return "unknown", percent / 100.0
    return _REASON_SAFE.sub("_", code), percent / 100.0


def language_filter(code: str, score: float, cfg: Any) -> str | None:
    """None to keep, ``language:<code>`` for an unlisted language, ``language:unknown`` when unsure."""
    if code == "unknown" or score < cfg.min_score:
        return "language:unknown"
    if code not in cfg.languages:
        return f"language:{code}"
    return None


# --- outlier features -----------------------------------------------------------------------------


def outlier_features(stats: TextStats, repetition: float | None = None) -> dict[str, float]:
    """Per-document features whose robust corpus statistics decide ``outlier:<feature>``.

    length: log10 of the characters; mean_word_length: characters per word; symbol_ratio and
    digit_ratio: per non-space character; uppercase_ratio: per letter; repetition: share of
    characters in repeated word 5-grams.
    """
    if repetition is None:
        repetition = dup_ngram_char_fraction(stats, 5)
    return {
        "length": math.log10(max(stats.n_chars, 1)),
        "mean_word_length": _ratio(stats.word_chars, stats.n_words),
        "symbol_ratio": _ratio(stats.symbols, stats.non_space),
        "digit_ratio": _ratio(stats.digits, stats.non_space),
        "uppercase_ratio": _ratio(stats.uppercase, stats.letters),
        "repetition": repetition,
    }


def quality_signals(text: str, stats: TextStats, lines: list[str]) -> dict[str, float]:
    """The signals annotated on every kept document (meta.clean.quality), rounded to 4 digits."""
    signals = {
        "words": stats.n_words,
        "lines": len(lines),
        "mean_word_length": _ratio(stats.word_chars, stats.n_words),
        "alpha_words": _ratio(stats.alpha_tokens, stats.n_tokens),
        "stop_words": stop_word_count(stats),
        "line_punct_ratio": _ratio(sum(1 for x in lines if x.rstrip().endswith(TERMINAL_PUNCT)), len(lines)),
        "dup_line_char_frac": _ratio(duplicates(lines)[1], len(text)),
        "top_2gram": top_ngram_char_fraction(stats, 2),
        "dup_5gram": dup_ngram_char_fraction(stats, 5),
    }
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in signals.items()}


def first_reason(checks: Iterable[str | None]) -> str | None:
    for reason in checks:
        if reason is not None:
            return reason
    return None
