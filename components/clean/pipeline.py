"""The Beam side of clean: DoFns that wrap the pure rules, and the writers.

Documents travel by claim check: their payloads (a record as ``pickle(record)``, an output row as
its JSON line) are appended to spill files under ``<work>/_spill`` by the DoFn that
makes them (``Spill``), and PCollections carry ``(id, pointer)`` with ``pointer = (file, offset,
length)``. A shuffle or a side-input wait then moves ~100 bytes per document instead of the text:
the in-process runner keeps each buffered PCollection in memory at ~5x its encoded size, and
distributed runners shuffle less. A pointer is only read in a later stage, after the bundle that
wrote it has finished (and flushed its spill file). With a distributed runner the output folder
(and so the spill folder) must be on storage that all workers share, as for the writers.

Other element shapes: a line is ``(location, raw_bytes | failure)`` with ``location =
(relative_file, line_no)`` (a failure dict instead of bytes marks the unreadable rest of a file,
from that line on); a record is the dict of ``filters.parse_line`` plus private ``_`` fields,
removed on output. Writers sort by id before writing, so file bytes do not depend on runner
scheduling.

Stages (each ends where a later step needs a corpus-wide result as a side input):
1. ``Prepare``: parse, denoise, redact personal data; votes for boilerplate lines; ids for the
   duplicate-id check.
2. ``Curate``: duplicate ids, boilerplate lines, length, language, Gopher, C4, FineWeb,
   decontamination; emits the outlier features, and light dedup keys (exact key, MinHash bands).
3. the dedup branch works on the light keys only: ``FilterOutliers`` (robust limits from the corpus
   histograms) -> exact groups, LSH buckets -> candidate pairs -> exact Jaccard of the candidates'
   shingles -> clusters.
4. ``Route``: outliers, exact and near duplicates dropped; kept documents annotated and sharded.
"""

from __future__ import annotations

import logging
import pickle
import traceback
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from components.clean import dedup, filters, outliers, pii, quality, readers
from components.clean.textstats import text_stats
from components.common.io import jsonl_line, open_uri
from components.common.progress import Progress
from components.common.seed import stable_hash

log = logging.getLogger("clean")
NAMESPACE = "clean"
REJECTED_SNIPPET = 2000  # characters of a rejected line kept for inspection
BAND_PREFIXES = 64  # LSH shards per band: (band, top 6 bits of the key) groups the bucket keys
BAND_FLUSH_DOCS = 5000  # documents whose band keys are packed into one element per shard


def location_str(loc: tuple[str, int] | list) -> str:
    return f"{loc[0]}:{loc[1]}"


def shard_of(doc_id: str, num_shards: int) -> int:
    """The output shard of a document id (stable across runs and processes)."""
    return stable_hash(doc_id) % num_shards


def part_name(shard: int, num_shards: int) -> str:
    return f"part-{shard:05d}-of-{num_shards:05d}.jsonl"


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def pack(record: dict[str, Any]) -> bytes:
    """A record's spilled payload: ``pickle(record)``. Not compressed: zlib cost more time than the
    disk it saved (the spill never sits in memory)."""
    return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(payload: bytes) -> dict[str, Any]:
    return pickle.loads(payload)


def row_payload(record: dict[str, Any]) -> bytes:
    """An output row's spilled payload: its JSON line (UTF-8), private fields removed."""
    return jsonl_line(public(record)).encode("utf-8")


Pointer = tuple[str, int, int]  # (spill file name, offset, length)


class Spill:
    """Append-only payload files under ``root``: ``put(bytes) -> pointer``, ``get(pointer) -> bytes``.

    Payloads are buffered up to ``chunk_bytes`` and written as one file (a whole object on object
    stores), named by a random id so that retried bundles never collide. ``flush`` must run before
    the bundle ends (``finish_bundle``).
    """

    def __init__(self, root: str, chunk_bytes: int = 16 << 20):
        self.root = root
        self.chunk_bytes = chunk_bytes
        self._buf = bytearray()
        self._name: str | None = None
        self._readers: dict[str, Any] = {}

    def put(self, payload: bytes) -> Pointer:
        if self._name is None:
            self._name = f"{uuid.uuid4().hex[:16]}.bin"
        pointer = (self._name, len(self._buf), len(payload))
        self._buf += payload
        if len(self._buf) >= self.chunk_bytes:
            self.flush()
        return pointer

    def flush(self) -> None:
        if self._name is not None:
            with open_uri(f"{self.root}/{self._name}", "wb", compression=None) as f:
                f.write(self._buf)
        self._buf, self._name = bytearray(), None

    def get(self, pointer: Pointer) -> bytes:
        name, offset, length = pointer
        f = self._readers.get(name)
        if f is None:
            if len(self._readers) >= 64:  # keep few files open
                self.close_readers()
            f = self._readers[name] = open_uri(f"{self.root}/{name}", "rb", compression=None).open()
        f.seek(offset)
        return f.read(length)

    def close_readers(self) -> None:
        for f in self._readers.values():
            f.close()
        self._readers = {}


class _Spilling(beam.DoFn):
    """A DoFn with a ``Spill`` store: written payloads are flushed at the end of every bundle."""

    spill_root: str | None = None
    spill: Spill | None = None

    def __init__(self, spill_root: str | None = None):
        self.spill_root = spill_root

    def setup(self) -> None:
        if self.spill_root is not None:
            self.spill = Spill(self.spill_root)

    def finish_bundle(self):
        if self.spill is not None:
            self.spill.flush()

    def teardown(self) -> None:
        if self.spill is not None:
            self.spill.close_readers()


class _Counted(_Spilling):
    """A spilling DoFn with lazily created Beam counters (``clean`` namespace) and the drop and
    reject outputs."""

    def _inc(self, name: str, n: int = 1) -> None:
        counters = self.__dict__.setdefault("_counters", {})
        counter = counters.get(name)
        if counter is None:
            counter = counters[name] = Metrics.counter(NAMESPACE, name)
        counter.inc(n)

    def _drop(self, record: dict[str, Any], reason: str, **extra: Any):
        self._inc(f"dropped.{reason}")
        pointer = self.spill.put(row_payload({**record, "reason": reason, **extra}))
        return beam.pvalue.TaggedOutput("dropped", (reason, (record["id"], pointer)))

    def _reject(self, loc: tuple[str, int], reason: str, **extra: Any):
        self._inc(f"rejected.{reason}")
        return beam.pvalue.TaggedOutput(
            "rejected", {"location": location_str(loc), "reason": reason, **extra, "_loc": loc}
        )

    def _error(self, loc: tuple[str, int], doc_id: str, exc: Exception):
        # A bug on one odd record must not lose the run: the record is rejected with the error.
        log.warning("clean: %s (%s): %s", location_str(loc), doc_id, traceback.format_exc(limit=3))
        return self._reject(loc, "processing_error", id=doc_id, error=f"{type(exc).__name__}: {exc}"[:500])


class ReadLines(beam.DoFn):
    """A file path -> ``(location, raw line bytes)`` for every non-blank line (``readers.read_lines``).

    Lines are read as bytes so that an invalid UTF-8 line is rejected on its own, not the file.
    Blank lines are layout, not input records, and are not counted. A file that stops being
    readable (a truncated or corrupt gzip) yields ``(location, failure dict)`` at the first line not
    read whole: the unreadable rest counts as one rejected record (``unreadable``; the failure's
    fields say what was lost, see ``readers``). Whether that fails the run is the launcher's call
    (``params.on_bad_input``), made from the rejected rows after the pipeline.
    """

    def __init__(self, root_prefix: str):
        self.root_prefix = root_prefix

    def process(self, path: str) -> Iterator[tuple[tuple[str, int], bytes | dict[str, Any]]]:
        rel = path[len(self.root_prefix) :] if path.startswith(self.root_prefix) else path.rsplit("/", 1)[-1]
        lines = Metrics.counter(NAMESPACE, "input")
        with Progress(f"clean: read {rel}", unit="lines") as progress:
            for item in readers.read_lines(path):
                lines.inc()
                if isinstance(item, readers.ReadFailure):
                    log.warning(
                        "clean: %s unreadable from line %d (%d lines read): %s",
                        rel,
                        item.line,
                        item.lines_read,
                        item.error,
                    )
                    yield (rel, item.line), item.as_dict()
                    return
                progress.update()
                yield (rel, item[0]), item[1]


class Prepare(_Counted):
    """Raw line -> ``(id, pointer)`` of the denoised, redacted record (main), or ``rejected`` / ``dropped``.

    Side outputs: ``ids`` ``(id, location)`` for every parsed record (the duplicate-id check) and
    ``lines`` (keys of the record's short lines, once per record: boilerplate votes).
    """

    def __init__(self, params, spill_root: str):
        super().__init__(spill_root)
        self.max_bytes = params.max_record_bytes
        self.form = params.normalization
        self.denoise = params.denoise
        self.pii_types = tuple(params.pii.types) if params.pii.enabled else ()

    def process(self, element: tuple[tuple[str, int], bytes | dict[str, Any]]):
        loc, raw = element
        if not isinstance(raw, bytes):  # the unreadable rest of a file (ReadLines)
            yield self._reject(loc, "unreadable", **raw)
            return
        record, reason = filters.parse_line(raw, self.max_bytes)
        if reason:
            snippet = raw[:REJECTED_SNIPPET].decode("utf-8", errors="replace")
            yield self._reject(loc, reason, line=snippet)
            return
        record["_loc"] = loc
        yield beam.pvalue.TaggedOutput("ids", (record["id"], location_str(loc)))
        try:
            text, info = filters.denoise(record["text"], self.denoise, self.form)
            notes: dict[str, Any] = {}
            if info.mojibake:
                self._inc("denoise.mojibake")
                notes["mojibake_fixed"] = True
            if info.markup:
                self._inc("denoise.markup")
                notes["markup_removed"] = True
            if info.replacement_chars:
                self._inc("denoise.replacement_chars", info.replacement_chars)
                notes["replacement_chars"] = info.replacement_chars
                ratio = filters.replacement_ratio(info.replacement_chars, text)
                if ratio > self.denoise.max_replacement_ratio:
                    yield self._drop(
                        {**record, "text": text}, filters.REPLACEMENT_REASON, detail=round(ratio, 4)
                    )
                    return
            record["text"] = text
            record["_notes"] = notes
            if self.pii_types:
                record["text"], counts = pii.redact(text, self.pii_types)
                for kind, n in counts.items():
                    if n:
                        self._inc(f"pii.{kind}", n)
                record["_pii"] = counts
            if self.denoise.boilerplate_min_docs:
                for key in filters.candidate_lines(record["text"], self.denoise.boilerplate_max_chars):
                    yield beam.pvalue.TaggedOutput("lines", key)
        except Exception as exc:  # noqa: BLE001 - see _Counted._error
            yield self._error(loc, record["id"], exc)
            return
        yield record["id"], self.spill.put(pack(record))


def duplicate_ids(element: tuple[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
    """``(id, locations)`` -> ``(location, first location)`` for every location after the first."""
    _, locs = element
    ordered = sorted(locs, key=_loc_sort_key)
    for loc in ordered[1:]:
        yield loc, ordered[0]


def _loc_sort_key(loc: str) -> tuple[str, int]:
    file, _, line = loc.rpartition(":")
    return file, int(line)


class Curate(_Counted):
    """``(id, pointer)`` -> ``(id, pointer)`` of the curated record (main), or ``dropped`` / ``rejected``.

    Side inputs: ``dup_ids`` {location: first location}, ``boilerplate`` (line keys),
    ``eval_index`` (``dedup.eval_index``). Side outputs: ``features`` (outlier features, for the
    corpus histograms), ``keys`` ``(id, features, text key, band keys bytes, pointer)`` for the dedup
    branch, ``boilerplate`` removed lines.
    """

    def __init__(self, params, spill_root: str):
        super().__init__(spill_root)
        self.p = params
        self.near = params.dedup.near
        self.feature_names = tuple(params.outliers.features)
        self._perm = None

    def setup(self) -> None:
        super().setup()
        d = self.p.dedup
        self._perm = dedup.permutations(d.num_perm, d.seed) if self.near else None

    def start_bundle(self) -> None:
        self._progress = Progress("clean: curate", unit="docs")

    def finish_bundle(self):
        super().finish_bundle()
        self._progress.__exit__(None, None, None)

    def process(self, element: tuple[str, Pointer], dup_ids, boilerplate, eval_index):
        self._progress.update()
        record = unpack(self.spill.get(element[1]))
        loc = record["_loc"]
        first = dup_ids.get(location_str(loc))
        if first is not None:
            yield self._reject(loc, "duplicate_id", id=record["id"], duplicate_of=first)
            return
        try:
            yield from self._curate(record, boilerplate, eval_index)
        except Exception as exc:  # noqa: BLE001 - see _Counted._error
            yield self._error(loc, record["id"], exc)

    def _curate(self, record: dict[str, Any], boilerplate, eval_index):
        p = self.p
        text = record["text"]
        notes = record.pop("_notes", {})
        if boilerplate:
            text, removed = filters.remove_lines(text, boilerplate, p.denoise.boilerplate_max_chars)
            if removed:
                self._inc("boilerplate.lines_removed", len(removed))
                notes["boilerplate_lines"] = len(removed)
                for line in removed:
                    yield beam.pvalue.TaggedOutput("boilerplate", (filters.line_key(line), line))
            record["text"] = text
        reason = filters.length_filter(text, p) if text else "too_short"
        if reason:
            yield self._drop(record, reason)
            return
        if p.language.enabled:
            code, score = quality.detect_language(text, p.language.sample_chars)
            reason = quality.language_filter(code, score, p.language)
            if reason:
                yield self._drop(record, reason, detail=round(score, 4))
                return
            record["_lang"] = (code, round(score, 4))
        stats = text_stats(text)
        lines = quality.nonempty_lines(text)
        reason = None
        if p.gopher_repetition.enabled:
            reason = quality.gopher_repetition(text, stats, lines, p.gopher_repetition)
        if reason is None and p.gopher_quality.enabled:
            reason = quality.gopher_quality(text, stats, lines, p.gopher_quality)
        if reason is None and p.c4.enabled:
            new_text, reason, removed_lines = quality.c4_lines(text, p.c4)
            if reason is None and new_text != text:
                text = record["text"] = new_text
                stats = text_stats(text)
                lines = quality.nonempty_lines(text)
                if removed_lines:
                    self._inc("c4.lines_removed", removed_lines)
                    notes["c4_lines_removed"] = removed_lines
        if reason is None and p.fineweb.enabled:
            reason = quality.fineweb(text, stats, lines, p.fineweb)
        if reason is None and eval_index and dedup.contaminated(stats.word_hashes, eval_index):
            reason = "contaminated"
        if reason:
            yield self._drop(record, reason)
            return
        features = quality.outlier_features(stats)
        record["_features"] = features
        record["_signals"] = quality.quality_signals(text, stats, lines)
        record["_notes"] = notes
        yield beam.pvalue.TaggedOutput("features", features)
        bands = None
        if self.near:
            a, b = self._perm
            shingle_set = dedup.shingles(stats.word_hashes, p.dedup.shingle_words)
            keys = dedup.band_keys(dedup.signature(shingle_set, a, b), p.dedup.bands, p.dedup.rows)
            bands = np.asarray(keys, dtype=np.uint64).tobytes()
        text_key = filters.text_key(text) if p.dedup.exact else None
        pointer = self.spill.put(pack(record))
        selected = tuple(features[name] for name in self.feature_names)
        yield beam.pvalue.TaggedOutput("keys", (record["id"], selected, text_key, bands, pointer))
        yield record["id"], pointer


class HistogramFn(beam.CombineFn):
    """Outlier features -> ``(documents, {feature: {bin: count}})``; merging adds counts (exact)."""

    def create_accumulator(self):
        return 0, {}

    def add_input(self, acc, features):
        n, hists = acc
        return n + 1, outliers.add(hists, features)

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(n for n, _ in accs), outliers.merge(h for _, h in accs)

    def extract_output(self, acc):
        return acc


class FilterOutliers(beam.DoFn):
    """Dedup keys of inliers only: ``exact`` ``(text key, id)``, ``pointers`` ``(id, pointer)`` and
    main ``(id, band keys bytes)``.

    Outliers are dropped later by ``Route`` with the same limits; here they only leave the dedup
    branch, so a cluster's representative is never an outlier.
    """

    def __init__(self, feature_names: tuple[str, ...]):
        self.feature_names = feature_names

    def process(self, element, limits):
        doc_id, values, text_key, bands, pointer = element
        if outliers.outlier_reason(dict(zip(self.feature_names, values, strict=True)), limits):
            return
        if text_key is not None:
            yield beam.pvalue.TaggedOutput("exact", (text_key, doc_id))
        if bands is not None:
            yield beam.pvalue.TaggedOutput("pointers", (doc_id, pointer))
            yield doc_id, bands


def exact_losers(element: tuple[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
    """``(text key, ids)`` -> ``(id, kept id)`` for every id but the smallest."""
    _, ids = element
    keep, *rest = sorted(ids)
    for doc_id in rest:
        yield doc_id, keep


class PackBands(beam.DoFn):
    """``(id, band keys)`` -> ``(shard, (uint64 keys bytes, ids))``: keys packed per (band, key prefix).

    One element per document and band would put ``bands`` small elements per document through the
    shuffle (4M for 200k documents); packing up to ``BAND_FLUSH_DOCS`` documents per shard element
    cuts that by three orders of magnitude, and the grouping by shard stays exact.
    """

    def start_bundle(self) -> None:
        self._buf: dict[int, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
        self._docs = 0

    def process(self, element: tuple[str, bytes]):
        doc_id, bands = element
        for band, key in enumerate(np.frombuffer(bands, dtype=np.uint64).tolist()):
            keys, ids = self._buf[band * BAND_PREFIXES + (key >> 58)]
            keys.append(key)
            ids.append(doc_id)
        self._docs += 1
        if self._docs >= BAND_FLUSH_DOCS:
            yield from self._flush()

    def finish_bundle(self):
        for element in self._flush():
            yield GlobalWindows.windowed_value(element)

    def _flush(self) -> Iterator[tuple[int, tuple[bytes, tuple[str, ...]]]]:
        buf, self._buf, self._docs = self._buf, defaultdict(lambda: ([], [])), 0
        for shard in sorted(buf):
            keys, ids = buf[shard]
            yield shard, (np.asarray(keys, dtype=np.uint64).tobytes(), tuple(ids))


class BucketPairs(_Counted):
    """``(shard, packed chunks)`` -> candidate pairs ``(a, b)``, a < b, of the LSH buckets in it."""

    def __init__(self, all_pairs_limit: int):
        self.limit = all_pairs_limit

    def process(self, element):
        _, chunks = element
        keys_parts, ids = [], []
        for key_bytes, chunk_ids in chunks:
            keys_parts.append(np.frombuffer(key_bytes, dtype=np.uint64))
            ids.extend(chunk_ids)
        keys = np.concatenate(keys_parts)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        # Runs of equal keys with two or more members are the buckets with candidates.
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], sorted_keys.size]
        for s, e in zip(starts[ends - starts > 1].tolist(), ends[ends - starts > 1].tolist(), strict=True):
            members = [ids[i] for i in order[s:e].tolist()]
            yield from dedup.bucket_pairs(members, self.limit)


class CandidateShingles(_Spilling):
    """``(id, pointer)`` -> ``(id, (characters, shingle hashes bytes))`` for documents in a candidate pair."""

    def __init__(self, shingle_words: int, spill_root: str):
        super().__init__(spill_root)
        self.n = shingle_words

    def process(self, element: tuple[str, Pointer], candidates):
        doc_id, pointer = element
        if doc_id in candidates:
            text = unpack(self.spill.get(pointer))["text"]
            yield doc_id, (len(text), dedup.text_shingles(text, self.n).tobytes())


def half_join(element) -> Iterator[tuple[str, tuple[str, int, bytes]]]:
    """``(a, {shingles: [(len, sh)], partners: [b ...]})`` -> ``(b, (a, len_a, sh_a))``."""
    a, groups = element
    for length, sh in groups["shingles"]:
        for b in groups["partners"]:
            yield b, (a, length, sh)


class Verify(_Counted):
    """``(b, {shingles: [(len_b, sh_b)], halves: [(a, len_a, sh_a)]})`` -> verified edges.

    An edge is ``(a, b, len_a, len_b)`` when the exact Jaccard similarity of the shingle sets is at
    least ``threshold``.
    """

    def __init__(self, threshold: float):
        self.threshold = threshold

    def process(self, element):
        b, groups = element
        for len_b, sh_b in groups["shingles"]:
            y = np.frombuffer(sh_b, dtype=np.uint64)
            for a, len_a, sh_a in groups["halves"]:
                self._inc("dedup.candidate_pairs")
                if dedup.jaccard(np.frombuffer(sh_a, dtype=np.uint64), y) >= self.threshold:
                    self._inc("dedup.verified_pairs")
                    yield a, b, len_a, len_b


def build_clusters(edges: list[tuple[str, str, int, int]]) -> dict[str, tuple[str, int]]:
    lengths: dict[str, int] = {}
    for a, b, len_a, len_b in edges:
        lengths[a], lengths[b] = len_a, len_b
    return dedup.clusters(((a, b) for a, b, _, _ in edges), lengths)


class Route(_Counted):
    """``(id, pointer)`` -> ``(shard, (id, row pointer))`` kept and annotated, or ``dropped`` as an
    outlier or a duplicate. Side inputs: outlier ``limits``, ``exact`` {id: kept id}, ``near``
    {id: (representative, cluster size)}."""

    def __init__(self, num_shards: int, spill_root: str):
        super().__init__(spill_root)
        self.num_shards = num_shards

    def process(self, element: tuple[str, Pointer], limits, exact, near):
        record = unpack(self.spill.get(element[1]))
        doc_id = record["id"]
        features = record.get("_features", {})
        reason = outliers.outlier_reason(features, limits)
        if reason:
            feature = reason.split(":", 1)[1]
            yield self._drop(record, reason, detail=round(features[feature], 6))
            return
        kept_id = exact.get(doc_id)
        if kept_id is not None:
            yield self._drop(record, "duplicate_exact", duplicate_of=kept_id)
            return
        rep, size = near.get(doc_id, (doc_id, 1))
        if rep != doc_id:
            yield self._drop(record, "duplicate_near", duplicate_of=rep)
            return
        self._inc("kept")
        annotations: dict[str, Any] = {
            "quality": {**record.get("_signals", {}), **_rounded(features)},
            "dedup": {"cluster": rep, "cluster_size": size},
        }
        if "_lang" in record:
            annotations["language"], annotations["language_score"] = record["_lang"]
        if "_pii" in record:
            annotations["pii"] = record["_pii"]
        if record.get("_notes"):
            annotations["denoise"] = record["_notes"]
        record["meta"] = {**record["meta"], "clean": annotations}
        yield shard_of(doc_id, self.num_shards), (doc_id, self.spill.put(row_payload(record)))


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}


class WriteRows(_Spilling):
    """``(key, [(id, row pointer)])`` -> the rows written sorted by id to ``path_of(key)``."""

    def __init__(self, path_of, spill_root: str):
        super().__init__(spill_root)
        self.path_of = path_of

    def process(self, element):
        key, rows = element
        by_id: dict[str, list[Pointer]] = defaultdict(list)
        for doc_id, pointer in rows:
            by_id[doc_id].append(pointer)
        n = 0
        with open_uri(self.path_of(key), "wt", encoding="utf-8", compression=None) as f:
            for doc_id in sorted(by_id):
                # Ids are unique but for records that share an id and are both dropped before the
                # duplicate-id check; their rows are ordered by content (pointers are random names).
                payloads = [self.spill.get(p) for p in by_id[doc_id]]
                for payload in sorted(payloads) if len(payloads) > 1 else payloads:
                    f.write(payload.decode("utf-8"))
                    n += 1
        yield n


def write_sorted(path: str, records: Iterable[dict[str, Any]], key) -> int:
    """Write ``records`` sorted by ``key`` as JSONL (private ``_`` fields removed); return the count."""
    rows = sorted(records, key=key)
    with open_uri(path, "wt", encoding="utf-8", compression=None) as f:
        for r in rows:
            f.write(jsonl_line(public(r)))
    return len(rows)


def write_count(path: str, n: int) -> None:
    with open_uri(path, "wt", encoding="utf-8", compression=None) as f:
        f.write(f"{n}\n")


def write_json_value(path: str, value: Any) -> None:
    """A small JSON file written from inside the pipeline (keys sorted)."""
    import json

    with open_uri(path, "wt", encoding="utf-8", compression=None) as f:
        f.write(json.dumps(value, sort_keys=True, ensure_ascii=False) + "\n")


# --- the evaluation set (decontamination and label conflicts) -------------------------------------


class ReadEval(beam.DoFn):
    """An evaluation JSONL file -> its records (dicts with ``text``; others are skipped, counted).

    A QA row (ingest's qa.jsonl) has no ``text``: its ``passage`` is its text (the article part the
    question is asked about), so the corpus document of a valid/test article is contaminated.
    """

    def process(self, path: str):
        import json

        with open_uri(path, "rb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    Metrics.counter(NAMESPACE, "eval.invalid").inc()
                    continue
                if isinstance(obj, dict) and "text" not in obj and isinstance(obj.get("passage"), str):
                    obj = {**obj, "text": obj["passage"]}
                if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                    Metrics.counter(NAMESPACE, "eval.records").inc()
                    yield obj
                else:
                    Metrics.counter(NAMESPACE, "eval.invalid").inc()


def eval_grams(record: dict[str, Any], form: str, ngram: int, min_words: int, splits: tuple[str, ...]):
    """An evaluation record -> ``(length, gram, prefix)`` rows (records of other splits give none)."""
    if splits and "split" in record and record["split"] not in splits:
        return []
    return dedup.eval_ngrams(filters.normalize_text(record["text"], form), ngram, min_words)


def label_key(record: dict[str, Any], form: str):
    """A labelled evaluation record -> ``(normalized text key, (id, label, text))``."""
    if "label" not in record:
        return
    text = filters.normalize_text(record["text"], form)
    key = " ".join(text.lower().split())
    yield key, (str(record.get("id", "")), str(record["label"]), text)


def label_conflict(element) -> Iterator[dict[str, Any]]:
    """``(key, [(id, label, text)])`` -> one conflict row when the same text carries two labels."""
    _, rows = element
    rows = sorted(rows)
    labels = sorted({label for _, label, _ in rows})
    if len(labels) > 1:
        yield {"text": rows[0][2], "labels": labels, "ids": [doc_id for doc_id, _, _ in rows]}
