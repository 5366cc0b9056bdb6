"""Near-duplicate and decontamination rules as pure functions (the Beam wiring is in ``pipeline``).

MinHash-LSH (Broder 1997; Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets", ch. 3):
- shingles: hashes of the word ``shingle_words``-grams of the lower-cased text (``textstats``);
- signature: for each of ``num_perm`` hash functions h_k(x) = (a_k * x + b_k) mod 2^64, keep the
  top 32 bits of the minimum over the shingles (multiply-shift hashing, Dietzfelbinger et al. 1997;
  NumPy-vectorised: one (num_perm x shingles) array per document);
- bands: ``bands`` groups of ``rows`` signature values, each hashed to one 64-bit bucket key;
  documents sharing a bucket key in any band are candidate pairs, which are then verified with the
  exact Jaccard similarity of their shingle sets;
- clusters: greedy star clustering of the verified pairs (``clusters``): the document with the most
  verified near-duplicates (then the longest, then the smallest id) represents them, so every
  dropped document is a verified near-duplicate of the one kept for it. Exact copies have the same
  neighbours and length, so the smallest id, which exact dedup keeps, is the one that can represent.

Decontamination (GPT-3 style, Brown et al. 2020, App. C): evaluation texts give word n-grams
(``ngram`` words; a shorter text of at least ``min_words`` words gives itself as one n-gram), and a
document containing any of them is contaminated.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from components.clean.textstats import mix64, ngram_hashes, word_hashes

_U64 = np.uint64


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) parameters of the MinHash functions: a odd, both uint64, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**64, size=num_perm, dtype=_U64) | _U64(1)
    b = rng.integers(0, 2**64, size=num_perm, dtype=_U64)
    return a, b


def shingles(words: np.ndarray, n: int) -> np.ndarray:
    """Sorted unique shingle hashes of a word-hash array; a text shorter than ``n`` words gives one
    shingle of all its words (none if it has no words)."""
    if words.size == 0:
        return np.empty(0, dtype=_U64)
    grams = ngram_hashes(words, min(n, words.size))
    return np.unique(grams)


def text_shingles(text: str, n: int) -> np.ndarray:
    return shingles(word_hashes(text)[0], n)


def signature(shingle_set: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash signature (uint32, one value per permutation); all-ones for an empty shingle set."""
    if shingle_set.size == 0:
        return np.full(a.size, 0xFFFFFFFF, dtype=np.uint32)
    hashed = a[:, None] * shingle_set[None, :] + b[:, None]  # (num_perm, shingles), wraps mod 2^64
    return (hashed.min(axis=1) >> _U64(32)).astype(np.uint32)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> list[int]:
    """One 64-bit bucket key per band (the band index is mixed in, so bands never share keys)."""
    block = sig[: bands * rows].astype(_U64).reshape(bands, rows)
    key = np.arange(bands, dtype=_U64) + _U64(1)
    for r in range(rows):
        key = mix64(key * _U64(0x100000001B3) + block[:, r])
    return key.tolist()


def jaccard(x: np.ndarray, y: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays (1.0 for two empty sets)."""
    if x.size == 0 and y.size == 0:
        return 1.0
    inter = np.intersect1d(x, y, assume_unique=True).size
    return inter / (x.size + y.size - inter)


def bucket_pairs(ids: Iterable[str], all_pairs_limit: int) -> Iterator[tuple[str, str]]:
    """Candidate pairs ``(a, b)`` with a < b from one LSH bucket.

    Every pair for buckets up to ``all_pairs_limit`` members; beyond that, each member paired with the
    smallest id only (a star), which keeps the work linear in a bucket of a mass-duplicated text.
    """
    members = sorted(set(ids))
    if len(members) <= all_pairs_limit:
        yield from itertools.combinations(members, 2)
    else:
        first = members[0]
        for other in members[1:]:
            yield first, other


def clusters(edges: Iterable[tuple[str, str]], lengths: Mapping[str, int]) -> dict[str, tuple[str, int]]:
    """``{id: (representative, cluster size)}`` for every id in a verified pair (greedy star clustering).

    Documents are taken in order of most verified near-duplicates, then longest (``lengths``:
    characters), then smallest id; each one not yet in a cluster becomes a representative, and its
    verified neighbours not yet in a cluster join it. So every dropped document is a verified
    near-duplicate (Jaccard >= threshold) of the document kept for it, and no two representatives are
    verified near-duplicates of each other. Connected components would also merge chains (A~B, B~C,
    but A and C far apart) and drop C for A. The result depends only on the set of edges.
    """
    neighbours: dict[str, set[str]] = {}
    for x, y in edges:
        if x != y:
            neighbours.setdefault(x, set()).add(y)
            neighbours.setdefault(y, set()).add(x)
    order = sorted(neighbours, key=lambda m: (-len(neighbours[m]), -lengths[m], m))
    rep_of: dict[str, str] = {}
    for node in order:
        if node in rep_of:
            continue
        rep_of[node] = node
        for other in sorted(neighbours[node]):
            rep_of.setdefault(other, node)
    sizes: dict[str, int] = {}
    for rep in rep_of.values():
        sizes[rep] = sizes.get(rep, 0) + 1
    return {node: (rep, sizes[rep]) for node, rep in rep_of.items()}


# --- decontamination ------------------------------------------------------------------------------


def eval_ngrams(text: str, n: int, min_words: int) -> list[tuple[int, int, int]]:
    """``(length, gram hash, prefix hash)`` for an evaluation text's word n-grams.

    The grams are the text's ``n``-grams, or the whole text as one gram when it has ``min_words``
    to ``n - 1`` words (none when shorter). The prefix hash is the hash of a gram's first
    ``min_words`` words: every gram has one, so a document without any prefix cannot match.
    """
    words = word_hashes(text)[0]
    if words.size < min_words:
        return []
    length = min(n, int(words.size))
    grams = ngram_hashes(words, length)
    prefixes = ngram_hashes(words, min_words)[: grams.size]
    return sorted(set(zip([length] * grams.size, grams.tolist(), prefixes.tolist(), strict=True)))


def eval_index(rows: Iterable[tuple[int, int, int]], min_words: int) -> dict:
    """The decontamination index: ``{"prefix": min_words, "prefixes": set, "grams": {length: set}}``."""
    prefixes: set[int] = set()
    grams: dict[int, set[int]] = {}
    for length, gram, prefix in rows:
        prefixes.add(prefix)
        grams.setdefault(length, set()).add(gram)
    return {
        "prefix": min_words,
        "prefixes": frozenset(prefixes),
        "grams": {length: frozenset(hs) for length, hs in sorted(grams.items())},
    }


def contaminated(words: np.ndarray, index: Mapping) -> bool:
    """True when the document's words contain any evaluation n-gram of ``index`` (``eval_index``).

    One pass with the short prefix n-grams rules out nearly every document; only documents with a
    prefix hit are checked against the full grams.
    """
    if not index or not index["prefixes"] or words.size < index["prefix"]:
        return False
    if index["prefixes"].isdisjoint(ngram_hashes(words, index["prefix"]).tolist()):
        return False
    for length, hashes in index["grams"].items():
        if words.size >= length and not hashes.isdisjoint(ngram_hashes(words, length).tolist()):
            return True
    return False
