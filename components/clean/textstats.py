"""Vectorised text statistics shared by the quality rules, the outlier features and the dedup.

One pass over a text's code points (NumPy) gives its character classes, its words (maximal runs of
letters and digits, lower-cased) as 64-bit hashes with their lengths, and its whitespace tokens.
Word hashes are a polynomial over the code points (mod 2^64) with a final bit mix, so the same word
hashes the same in every document and process: n-gram hashes built from them serve the Gopher
repetition rules, MinHash shingles and the decontamination n-grams alike.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

ALNUM, ALPHA, DIGIT, UPPER, SPACE, SYMBOL = 1, 2, 4, 8, 16, 32


_U64 = np.uint64
_BASE = 0x100000001B3  # FNV-1 64-bit prime (odd, so invertible mod 2^64)
_BASE_INV = pow(_BASE, -1, 2**64)
_NGRAM_MULT = _U64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio (odd)
_MIX1 = _U64(0xBF58476D1CE4E5B9)  # splitmix64 finalizer constants
_MIX2 = _U64(0x94D049BB133111EB)


def _char_flags(cp: int) -> int:
    ch = chr(cp)
    flags = 0
    if ch.isalnum():
        flags |= ALNUM
        if ch.isalpha():
            flags |= ALPHA
        elif ch.isdigit() or unicodedata.category(ch) == "Nd":
            flags |= DIGIT
        if ch.isupper():
            flags |= UPPER
    elif ch.isspace():
        flags |= SPACE
    elif unicodedata.category(ch).startswith("S"):  # math, currency, modifier, other symbols
        flags |= SYMBOL
    return flags


# Column k sums the counts of the flag values that have bit k (for one bincount + one matmul).
_BIT_MATRIX = np.array(
    [[(v & bit) != 0 for bit in (ALPHA, DIGIT, UPPER, SYMBOL, SPACE)] for v in range(64)], dtype=np.int64
)
_ASCII_FLAGS = np.array([_char_flags(c) for c in range(128)], dtype=np.uint8)
_FLAG_CACHE: dict[int, int] = {}


def char_flags(codepoints: np.ndarray) -> np.ndarray:
    """The class bits (ALNUM, ALPHA, DIGIT, UPPER, SPACE, SYMBOL) of each code point (uint8 array)."""
    if codepoints.size == 0 or int(codepoints.max()) < 128:
        return _ASCII_FLAGS[codepoints]
    flags = np.empty(codepoints.shape, dtype=np.uint8)
    low = codepoints < 128
    flags[low] = _ASCII_FLAGS[codepoints[low]]
    high = codepoints[~low]
    uniq, inverse = np.unique(high, return_inverse=True)
    table = np.empty(uniq.shape, dtype=np.uint8)
    for i, cp in enumerate(uniq.tolist()):
        f = _FLAG_CACHE.get(cp)
        if f is None:
            f = _FLAG_CACHE[cp] = _char_flags(cp)
        table[i] = f
    flags[~low] = table[inverse]
    return flags


def codepoints(text: str) -> np.ndarray:
    """The code points of ``text`` (uint8 for ASCII text, else uint32)."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class _Powers:
    """BASE^i and BASE^-i mod 2^64 for i < n, grown on demand (shared by all texts of a process)."""

    def __init__(self) -> None:
        self.pow = np.ones(1, dtype=_U64)
        self.inv = np.ones(1, dtype=_U64)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if n > self.pow.size:
            size = max(n, 2 * self.pow.size, 4096)
            with np.errstate(over="ignore"):
                self.pow = np.cumprod(np.r_[_U64(1), np.full(size - 1, _BASE, dtype=_U64)], dtype=_U64)
                self.inv = np.cumprod(np.r_[_U64(1), np.full(size - 1, _BASE_INV, dtype=_U64)], dtype=_U64)
        return self.pow[:n], self.inv[:n]


_POWERS = _Powers()


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads every input bit over the output (uint64 arrays, wraps)."""
    x = x ^ (x >> _U64(30))
    x = x * _MIX1
    x = x ^ (x >> _U64(27))
    x = x * _MIX2
    return x ^ (x >> _U64(31))


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of True in a boolean array."""
    padded = np.zeros(mask.size + 2, dtype=np.int8)
    padded[1:-1] = mask
    d = padded[1:] - padded[:-1]
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def span_hashes(cps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hashes of the spans ``cps[s:e]`` (polynomial over code points via prefix sums, mixed)."""
    n = cps.size
    pw, inv = _POWERS.get(n + 1)
    prefix = np.zeros(n + 1, dtype=_U64)
    np.cumsum(cps.astype(_U64) * pw[:n], out=prefix[1:])
    return mix64((prefix[ends] - prefix[starts]) * inv[starts])


def word_hashes(text: str) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, lengths)`` of the words of ``text`` (runs of letters/digits, lower-cased)."""
    cps = codepoints(text.lower())
    starts, ends = runs((char_flags(cps) & ALNUM) != 0)
    return span_hashes(cps, starts, ends), ends - starts


def ngram_hashes(words: np.ndarray, n: int, mix: bool = True) -> np.ndarray:
    """Hashes of the word n-grams (sliding window of ``n`` word hashes); empty if fewer words.

    ``mix=False`` skips the final bit mix: enough when only equality matters (repetition counts
    within one text), not for MinHash, whose hash functions want well-spread inputs.
    """
    m = words.size - n + 1
    if m <= 0:
        return np.empty(0, dtype=_U64)
    grams = words[:m].copy()
    for j in range(1, n):
        grams *= _NGRAM_MULT
        grams += words[j : j + m]
    return mix64(grams) if mix else grams


@dataclass
class TextStats:
    """Per-text counts, from one vectorised pass. Words are lower-cased letter/digit runs."""

    n_chars: int
    word_hashes: np.ndarray  # uint64, one per word, in order
    word_lengths: np.ndarray  # characters per word
    n_tokens: int  # whitespace-separated tokens
    alpha_tokens: int  # tokens with at least one letter
    letters: int
    uppercase: int
    digits: int
    symbols: int
    non_space: int
    cache: dict[Any, Any] = field(default_factory=dict)  # rule results shared by several rules

    @property
    def n_words(self) -> int:
        return int(self.word_hashes.size)

    @cached_property
    def word_chars(self) -> int:
        return int(self.word_lengths.sum())

    @cached_property
    def word_char_prefix(self) -> np.ndarray:
        """Cumulative word lengths with a leading 0 (characters of words i..j = p[j] - p[i])."""
        return np.concatenate(([0], np.cumsum(self.word_lengths)))


def text_stats(text: str) -> TextStats:
    """Counts and word hashes of ``text`` (about 50 us for a 3 kB article)."""
    cps = codepoints(text)
    flags = char_flags(cps)
    lower = text.lower()
    if lower == text:
        low_cps, low_flags = cps, flags
    else:
        low_cps = codepoints(lower)
        # Lower-casing keeps the class of nearly every character; recompute only if lengths differ.
        low_flags = flags if low_cps.size == cps.size else char_flags(low_cps)
    starts, ends = runs((low_flags & ALNUM) != 0)
    hashes = span_hashes(low_cps, starts, ends)
    t_starts, t_ends = runs((flags & SPACE) == 0)
    letter_prefix = np.concatenate(([0], np.cumsum((flags & ALPHA) != 0)))
    alpha_tokens = int(np.count_nonzero(letter_prefix[t_ends] - letter_prefix[t_starts]))
    letters, digits, uppercase, symbols, spaces = (np.bincount(flags, minlength=64) @ _BIT_MATRIX).tolist()
    return TextStats(
        n_chars=int(cps.size),
        word_hashes=hashes,
        word_lengths=ends - starts,
        n_tokens=int(t_starts.size),
        alpha_tokens=alpha_tokens,
        letters=letters,
        uppercase=uppercase,
        digits=digits,
        symbols=symbols,
        non_space=int(cps.size) - spaces,
    )
