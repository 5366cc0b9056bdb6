"""Near-duplicate and decontamination rules as pure functions (the Beam wiring is in ``pipeline``).

MinHash-LSH (Broder 1997; Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets", ch. 3):
- shingles: hashes of the word ``shingle_words``-grams of the lower-cased text (``textstats``);
- signature: for each of ``num_perm`` hash functions h_k(x) = (a_k * x + b_k) mod 2^64, keep the
  top 32 bits of the minimum over the shingles (multiply-shift hashing, Dietzfelbinger et al. 1997;
  NumPy-vectorised: one (num_perm x shingles) array per document);
- bands: ``bands`` groups of ``rows`` signature values, each hashed to one 64-bit bucket key;
  documents sharing a bucket key in any band are candidate pairs, which are then verified with the
  exact Jaccard similarity of their shingle sets;
- clusters: connected components of the verified pairs (union-find); the representative of a
  cluster is its longest document, ties broken by the smallest id, so an exact duplicate's kept copy
  (smallest id) is also the representative of its near-duplicate cluster.

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


class UnionFind:
    """Connected components over string ids; the root of a component is not significant."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        root = parent.setdefault(x, x)
        while root != parent[root]:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, x: str, y: str) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)


def clusters(
    edges: Iterable[tuple[str, str]], lengths: Mapping[str, int]
) -> dict[str, tuple[str, int]]:
    """``{id: (representative, cluster size)}`` for every id in a verified pair.

    The representative is the longest document (``lengths``: characters), ties to the smallest id;
    the result depends only on the set of edges, never on their order.
    """
    uf = UnionFind()
    for x, y in edges:
        uf.union(x, y)
    groups: dict[str, list[str]] = {}
    for node in uf.parent:
        groups.setdefault(uf.find(node), []).append(node)
    out: dict[str, tuple[str, int]] = {}
    for members in groups.values():
        rep = min(members, key=lambda m: (-lengths[m], m))
        for m in members:
            out[m] = (rep, len(members))
    return out


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
