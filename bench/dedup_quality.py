"""Near-duplicate quality of the clean stage on real text with planted edits and exact ground truth.

Corpus: the 3.8k news articles of data/raw/news_articles.csv, plus, for ``--families`` of them, 1-4
edited copies each. Every copy applies one planted edit kind to its base: word insertions,
deletions, substitutions, sentence reordering, or all of these ("mixed"). Two scenarios:

- ``realistic``: 75% of the copies are republications with light edits (at most ~1% of the words,
  or moved sentences: Jaccard to the base >= ~0.9, so copies are also near-duplicates of each other);
  25% are rewrites with heavy edits (5-12% of the words: Jaccard ~0.35-0.7), the hard negatives that
  must stay apart.
- ``stress``: every copy's edit strength is uniform over 0-6% of the words, so Jaccard to the base
  spreads evenly over ~0.5-1.0, straddling the threshold. Two copies that are each near-duplicates
  of the base are then often not near-duplicates of each other (Jaccard distance adds up), and no
  partition into clusters can reach pairwise precision and recall of 1: this shows the price of
  that non-transitivity.

Ground truth: the exact Jaccard similarity of the documents' word 5-gram sets (plain Python sets of
word tuples, independent of the stage's hashing), for every pair of the whole corpus with
similarity >= 0.8, found by prefix filtering (Chaudhuri et al. 2006: two sets with Jaccard >= t share
a token in their rarest |A| - ceil(t|A|) + 1 tokens), so no true pair is missed.

Prediction: the clean stage itself (``components.clean.core.run`` in its own process, what
``python -m components.clean`` calls) with only the exact and near dedup rules on; two documents
are predicted duplicates when they end in the same cluster (kept documents carry
``meta.clean.dedup.cluster``, dropped ones ``duplicate_of``).

Prints, per scenario, pairwise precision and recall over all document pairs (goals: P >= 0.98,
R >= 0.95), the same split by planted edit kind, whether every dropped document is a verified
near-duplicate of the document kept for it, and how many true pairs survive with both documents
kept. About 2 minutes on 2 cores: ``.venv/bin/python bench/dedup_quality.py [--scenario realistic]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, clean_command, news_documents, run_measured, write_jsonl  # noqa: E402

THRESHOLD = 0.8
SHINGLE = 5
EDIT_KINDS = ("insert", "delete", "substitute", "reorder", "mixed")
_WORD = re.compile(r"[^\W_]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def shingle_set(text: str, n: int = SHINGLE) -> frozenset:
    """Word n-grams of the lower-cased text (letter/digit runs), as tuples of strings."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def edit(text: str, kind: str, strength: float, vocab: list[str], rng: random.Random) -> str:
    """One planted edit of ``kind``; ``strength`` is the share of words touched (or sentences moved)."""
    if kind == "mixed":
        for k in ("insert", "delete", "substitute", "reorder"):
            text = edit(text, k, strength / 3, vocab, rng)
        return text
    if kind == "reorder":
        sentences = _SENTENCE.split(text)
        moves = max(1, round(strength * len(sentences)))
        for _ in range(moves):
            if len(sentences) < 3:
                break
            i = rng.randrange(len(sentences))
            s = sentences.pop(i)
            sentences.insert(rng.randrange(len(sentences) + 1), s)
        return " ".join(sentences)
    words = text.split(" ")
    k = max(1, round(strength * len(words)))
    for _ in range(k):
        if kind == "insert":
            words.insert(rng.randrange(len(words) + 1), rng.choice(vocab))
        elif kind == "delete" and len(words) > 10:
            words.pop(rng.randrange(len(words)))
        elif kind == "substitute":
            words[rng.randrange(len(words))] = rng.choice(vocab)
    return " ".join(words)


def build_corpus(families: int, seed: int, scenario: str) -> tuple[list[dict], dict[str, str]]:
    """News documents plus planted copies; returns the documents and {copy id: edit kind}."""
    rng = random.Random(seed)
    news = news_documents()
    docs = [{"id": d["id"], "text": d["text"]} for d in news]
    vocab = sorted({w for d in news[:500] for w in d["text"].split() if w.isalpha()})
    bases = rng.sample([d for d in news if len(d["text"].split()) >= 250], families)
    kinds: dict[str, str] = {}
    for base in bases:
        for j in range(rng.randint(1, 4)):
            kind = rng.choice(EDIT_KINDS)
            # A word edit changes up to 5 shingles, a moved sentence ~12: 1% of the words edited gives
            # Jaccard ~0.9, 6% ~0.5; moving 10% of the sentences ~0.8.
            if scenario == "stress":
                strength = rng.uniform(0.0, 0.06) if kind != "reorder" else rng.uniform(0.0, 0.3)
            elif rng.random() < 0.75:  # a republication
                strength = rng.uniform(0.0, 0.008) if kind != "reorder" else rng.uniform(0.0, 0.05)
            else:  # a rewrite
                kind = "rewrite-" + (kind if kind != "reorder" else "mixed")
                strength = rng.uniform(0.05, 0.12)
            copy_id = f"{base['id']}~{j}"
            docs.append(
                {
                    "id": copy_id,
                    "text": edit(base["text"], kind.removeprefix("rewrite-"), strength, vocab, rng),
                }
            )
            kinds[copy_id] = kind
    return docs, kinds


def true_pairs(docs: list[dict], threshold: float) -> dict[tuple[str, str], float]:
    """Every pair with exact Jaccard >= threshold (prefix filtering: exact, no pair missed)."""
    sets = {d["id"]: shingle_set(d["text"]) for d in docs}
    freq: Counter = Counter()
    for s in sets.values():
        freq.update(s)
    index: dict[tuple, list[str]] = defaultdict(list)
    candidates: set[tuple[str, str]] = set()
    for doc_id in sorted(sets):
        s = sets[doc_id]
        ordered = sorted(s, key=lambda g: (freq[g], g))
        prefix = ordered[: len(ordered) - math.ceil(threshold * len(ordered)) + 1]
        for g in prefix:
            for other in index[g]:
                candidates.add((other, doc_id) if other < doc_id else (doc_id, other))
            index[g].append(doc_id)
    out = {}
    for a, b in candidates:
        j = jaccard(sets[a], sets[b])
        if j >= threshold:
            out[(a, b)] = j
    return out


def predicted_clusters(out: Path) -> dict[str, str]:
    """{id: cluster} from the stage's output (kept documents and their dropped duplicates)."""
    cluster: dict[str, str] = {}
    for part in (out / "documents").glob("*.jsonl"):
        for line in part.read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            cluster[d["id"]] = d["meta"]["clean"]["dedup"]["cluster"]
    for name in ("duplicate_near", "duplicate_exact"):
        path = out / "dropped" / f"{name}.jsonl"
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                d = json.loads(line)
                cluster[d["id"]] = d["duplicate_of"]
    # an exact duplicate's kept copy may itself sit in a near-duplicate cluster
    return {i: cluster.get(c, c) for i, c in cluster.items()}


def pairs_of(clusters: dict[str, str]) -> set[tuple[str, str]]:
    members: dict[str, list[str]] = defaultdict(list)
    for doc_id, c in clusters.items():
        members[c].append(doc_id)
    return {p for ms in members.values() for p in itertools.combinations(sorted(ms), 2)}


def prf(pred: set, truth: set) -> tuple[float, float, int]:
    hit = len(pred & truth)
    return (hit / len(pred) if pred else 1.0), (hit / len(truth) if truth else 1.0), hit


def evaluate(scenario: str, families: int, seed: int) -> bool:
    t0 = time.perf_counter()
    docs, kinds = build_corpus(families, seed, scenario)
    truth = true_pairs(docs, THRESHOLD)
    print(
        f"\n== scenario {scenario}: {len(docs)} documents ({len(kinds)} planted copies of {families} articles); "
        f"ground truth: {len(truth)} pairs with Jaccard >= {THRESHOLD} ({time.perf_counter() - t0:.0f}s)"
    )

    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
        tmp = Path(tmp)
        write_jsonl(tmp / "corpus.jsonl", docs)
        off = {"enabled": False}
        clean = {
            "min_chars": 1,
            "max_chars": 10_000_000,
            "min_words": 0,
            "denoise": {"boilerplate_min_docs": 0, "max_replacement_ratio": 1.0},
            "language": off, "gopher_quality": off, "gopher_repetition": off, "c4": off, "fineweb": off,
            "outliers": off, "pii": off,
        }  # fmt: skip
        seconds, peak, _ = run_measured(clean_command(tmp / "corpus.jsonl", tmp / "out", clean), cwd=ROOT)
        clusters = predicted_clusters(tmp / "out")
        with open(tmp / "out" / "report.json", encoding="utf-8") as f:
            report = json.load(f)
    if len(clusters) != len(docs):
        sys.exit(
            f"bench: {len(docs) - len(clusters)} documents left the stage for other reasons: {report['dropped']}"
        )

    pred = pairs_of(clusters)
    t = set(truth)
    precision, recall, hit = prf(pred, t)
    print(
        f"clean stage (dedup rules only): {seconds:.1f}s, {len(docs) / seconds:.0f} docs/s, "
        f"peak RSS {peak / 2**20:.0f} MiB, {report['dedup'].get('clusters', 0)} clusters"
    )
    print(
        f"pairwise (same cluster) over all {len(docs) * (len(docs) - 1) // 2} pairs: "
        f"predicted {len(pred)}, true {len(t)}, correct {hit}"
    )
    print(f"  precision {precision:.4f} (goal >= 0.98)   recall {recall:.4f} (goal >= 0.95)")
    sets = {d["id"]: shingle_set(d["text"]) for d in docs}
    false_j = sorted(jaccard(sets[a], sets[b]) for a, b in pred - t)
    if false_j:
        print(
            f"  false pairs: {len(false_j)}, Jaccard min {false_j[0]:.3f} / median "
            f"{false_j[len(false_j) // 2]:.3f} / max {false_j[-1]:.3f}"
        )
    missed = sorted(truth[p] for p in t - pred)
    if missed:
        print(f"  missed true pairs: {len(missed)}, Jaccard min {missed[0]:.3f} / max {missed[-1]:.3f}")
    print("  by planted edit kind (base-copy pairs; J = their exact Jaccard, min/median/max):")
    for kind in sorted(set(kinds.values())):
        base_pairs = {tuple(sorted((c.split("~")[0], c))) for c, k in kinds.items() if k == kind}
        kt, kp = base_pairs & t, base_pairs & pred
        js = sorted(jaccard(sets[a], sets[b]) for a, b in base_pairs)
        print(f"    {kind:18s} J {js[0]:.2f}/{js[len(js) // 2]:.2f}/{js[-1]:.2f}", end="")
        p_k = f"{len(kp & kt) / len(kp):.4f}" if kp else "-"
        r_k = f"{len(kp & kt) / len(kt):.4f}" if kt else "-"
        print(
            f"  copies {len(base_pairs):4d}  true {len(kt):4d}  predicted {len(kp):4d}  "
            f"precision {p_k:>6s}  recall {r_k:>6s}"
        )
    rep_pairs = {tuple(sorted((i, c))) for i, c in clusters.items() if i != c}
    verified = len(rep_pairs & t) / max(len(rep_pairs), 1)
    kept = {i for i, c in clusters.items() if i == c}
    both_kept = sum(1 for a, b in t if a in kept and b in kept)
    print(
        f"  dropped documents: {len(rep_pairs)}, near-duplicates (J >= {THRESHOLD}) of the one kept for them: "
        f"{verified:.4f}; true pairs with both documents kept: {both_kept}"
    )
    ok = precision >= 0.98 and recall >= 0.95
    print(f"  goals (P >= 0.98, R >= 0.95) {'met' if ok else 'NOT met'}; {time.perf_counter() - t0:.0f}s")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", type=int, default=800, help="news articles given planted copies")
    parser.add_argument("--scenario", choices=("realistic", "stress", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    scenarios = ("realistic", "stress") if args.scenario == "both" else (args.scenario,)
    for scenario in scenarios:
        evaluate(scenario, args.families, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
