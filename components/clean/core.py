"""clean: JSONL documents -> curated documents (Apache Beam), with every removal accounted for.

Steps (Beam transforms over the pure rules in ``filters``, ``quality``, ``outliers``, ``dedup``,
``pii``; the first rule that fires names the reason):
1. read every non-blank line of the input (a JSONL file, or every *.jsonl[.gz] under a folder) as
   bytes, with its location ``file:line`` (``readers``); bad input (a file that is not JSONL, a
   truncated or corrupt shard, a run that keeps nothing) fails the run with ``InputError`` unless
   ``params.on_bad_input`` is ``quarantine`` (see ``run``);
2. parse: bad lines are *rejected* (``too_large``, ``invalid_utf8``, ``invalid_json``,
   ``missing_text`` ...), a second record with a taken id as ``duplicate_id`` (the first by file,
   line is kept);
3. denoise: markup remnants, mojibake (ftfy), U+FFFD (``denoise:replacement_chars`` when too
   many), controls, whitespace, Unicode form ``params.normalization``; personal data replaced by
   typed placeholders; lines found in ``denoise.boilerplate_min_docs`` documents removed;
4. rules: length (``too_short`` ...), language (``language:<code>``), Gopher repetition and quality,
   C4, FineWeb, decontamination against ``--decontaminate`` texts (``contaminated``);
5. outliers: robust per-feature limits from the corpus (``outlier:<feature>``);
6. duplicates: exact (SHA-1 of the text, smallest id kept) and near (MinHash-LSH, verified Jaccard,
   clusters; the longest document kept): ``duplicate_exact`` / ``duplicate_near`` with
   ``duplicate_of``.

Outputs (through ``atomic_output_dir``; every file sorted, so reruns are byte-identical):
- ``documents/part-SSSSS-of-NNNNN.jsonl``: kept ``{id, text, source, meta}``, ids hashed to
  ``params.num_shards`` shards, each sorted by id; ``meta.clean`` holds the document's signals
  (language, quality signals and features, dedup cluster and size, PII counts, repairs);
- ``dropped/<reason>.jsonl`` (``a:b`` -> ``dropped/a/b.jsonl``): dropped records with ``reason``;
- ``rejected/rejected.jsonl``: ``{location, reason, line | id | error}`` sorted by location;
- ``report.json``: ``{input, kept, dropped: {reason: n}, rejected: {reason: n}, ...}`` where
  ``input == kept + sum(dropped) + sum(rejected)`` (checked; the stage fails otherwise), plus PII
  counts, boilerplate lines, outlier limits, dedup clusters, decontamination, label conflicts,
  the input ``files`` (read, skipped as unsupported, unreadable from a line on) and the Beam
  counters; ``report.md``: the same for a person, with sample documents per reason;
- ``metrics.json``: the counts plus kept fraction, characters and documents per source.

The runner comes from ``params.runner`` and ``params.pipeline_options`` (in-process FnApiRunner by
default; Flink, Spark or Dataflow by options alone). Writers run inside the pipeline, so with a
distributed runner the output folder must be on storage that the workers share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import fsspec

from components.clean import readers
from components.clean.params import Params
from components.clean.report import (
    COUNT_FILE,
    SPILL_DIR,
    STATS_DIR,
    AccountingError,
    make_report,
    write_reports,
)
from components.common import artifacts as a
from components.common.entry import InputError
from components.common.io import atomic_output_dir, is_remote, list_files
from components.common.metrics import write_metrics

__all__ = ["AccountingError", "InputError", "build_pipeline", "input_files", "make_report", "run"]

log = logging.getLogger("clean")

INPUT_SUFFIXES = readers.INPUT_SUFFIXES


def pipeline_options(params: Params):
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions([f"--runner={params.runner}", *params.pipeline_options])


def input_files(uri: str) -> tuple[list[str], str]:
    """The JSONL files of ``uri`` (a file or a folder) and the prefix that locations drop
    (``readers.discover`` without the skipped files)."""
    inputs = readers.discover(uri)
    return inputs.files, inputs.prefix


def _write_grouped(pcoll, label: str, path_of, spill: str):
    """Group ``(key, (id, row pointer))`` rows and write each group sorted by id to ``path_of(key)``."""
    import apache_beam as beam

    from components.clean import pipeline as t

    return (
        pcoll
        | f"Group{label}" >> beam.GroupByKey()
        | f"Write{label}" >> beam.ParDo(t.WriteRows(path_of, spill))
    )


def build_pipeline(
    p, files: list[str], prefix: str, work: str, params: Params, eval_uris: Sequence[str] = ()
) -> None:
    """Add the clean transforms to pipeline ``p``; they write into the folder ``work``."""
    import apache_beam as beam
    from apache_beam.pvalue import AsDict, AsSingleton

    from components.clean import dedup, filters
    from components.clean import pipeline as t

    stats = f"{work}/{STATS_DIR}"
    spill = f"{work}/{SPILL_DIR}"
    n = params.num_shards
    lines = p | "Files" >> beam.Create(files) | "ReadLines" >> beam.ParDo(t.ReadLines(prefix))
    _ = (
        lines
        | "CountInput" >> beam.combiners.Count.Globally()
        | "WriteCount" >> beam.Map(lambda c: t.write_count(f"{work}/{COUNT_FILE}", c))
    )

    # 1. parse, denoise, redact.
    prepared = lines | "Prepare" >> beam.ParDo(t.Prepare(params, spill)).with_outputs(
        "rejected", "dropped", "ids", "lines", main="ok"
    )
    dup_ids = prepared.ids | "GroupIds" >> beam.GroupByKey() | "DuplicateIds" >> beam.FlatMap(t.duplicate_ids)
    boilerplate = (
        prepared.lines
        | "CountLines" >> beam.combiners.Count.PerElement()
        | "Boilerplate" >> beam.Filter(lambda kv, k: kv[1] >= k, max(params.denoise.boilerplate_min_docs, 2))
        | "BoilerplateKeys" >> beam.Keys()
        | "BoilerplateSet" >> beam.combiners.ToSet()
    )

    # The evaluation texts: n-grams for decontamination, and label conflicts.
    if eval_uris:
        d = params.decontaminate
        evals = p | "EvalFile" >> beam.Create(list(eval_uris)) | "ReadEval" >> beam.ParDo(t.ReadEval())
        eval_index = AsSingleton(
            evals
            | "EvalGrams"
            >> beam.FlatMap(t.eval_grams, params.normalization, d.ngram, d.min_words, tuple(d.splits))
            | "AllGrams" >> beam.combiners.ToList()
            | "EvalIndex" >> beam.Map(dedup.eval_index, d.min_words)
        )
        _ = (
            evals
            | "LabelKeys" >> beam.FlatMap(t.label_key, params.normalization)
            | "GroupLabels" >> beam.GroupByKey()
            | "Conflicts" >> beam.FlatMap(t.label_conflict)
            | "AllConflicts" >> beam.combiners.ToList()
            | "WriteConflicts"
            >> beam.Map(
                lambda rows: t.write_json_value(f"{stats}/label_conflicts.json", sorted(rows, key=str))
            )
        )
    else:
        eval_index = {}

    # 2. rules.
    curated = prepared.ok | "Curate" >> beam.ParDo(
        t.Curate(params, spill), AsDict(dup_ids), AsSingleton(boilerplate), eval_index
    ).with_outputs("rejected", "dropped", "features", "keys", "boilerplate", main="ok")
    _ = (
        curated.boilerplate
        | "CountRemoved" >> beam.combiners.Count.PerElement()
        | "RemovedLines" >> beam.combiners.ToList()
        | "WriteBoilerplate"
        >> beam.Map(lambda rows: t.write_json_value(f"{stats}/boilerplate.json", sorted(rows, key=str)))
    )

    # 3. outlier limits from corpus statistics; the dedup branch on light keys of the inliers.
    limits = (
        curated.features
        | "Histograms" >> beam.CombineGlobally(t.HistogramFn())
        | "Limits" >> beam.MapTuple(lambda docs, hists: _limits(hists, docs, params))
    )
    _ = limits | "WriteLimits" >> beam.Map(lambda lim: t.write_json_value(f"{stats}/outliers.json", lim))
    inlier_keys = curated.keys | "FilterOutliers" >> beam.ParDo(
        t.FilterOutliers(tuple(params.outliers.features)), AsSingleton(limits)
    ).with_outputs("exact", "pointers", main="bands")
    exact = (
        inlier_keys.exact | "GroupText" >> beam.GroupByKey() | "ExactLosers" >> beam.FlatMap(t.exact_losers)
    )
    if params.dedup.near:
        d = params.dedup
        pairs = (
            inlier_keys.bands
            | "PackBands" >> beam.ParDo(t.PackBands())
            | "GroupBands" >> beam.GroupByKey()
            | "BucketPairs" >> beam.ParDo(t.BucketPairs(d.bucket_all_pairs))
            | "DistinctPairs" >> beam.Distinct()
        )
        candidates = (
            pairs
            | "PairIds" >> beam.FlatMap(lambda pair: pair)
            | "DistinctIds" >> beam.Distinct()
            | "CandidateKeys" >> beam.Map(lambda doc_id: (doc_id, True))
        )
        # The inliers' pointers, not curated.ok: FnApiRunner (Beam 2.77) deadlocks ("watermark-pending
        # bundles did not execute") when one PCollection feeds two side-input-waiting ParDos and the
        # second one's side input depends on the first one's output.
        shingled = inlier_keys.pointers | "Shingles" >> beam.ParDo(
            t.CandidateShingles(d.shingle_words, spill), AsDict(candidates)
        )
        halves = (
            {"shingles": shingled, "partners": pairs}
            | "JoinFirst" >> beam.CoGroupByKey()
            | "HalfJoin" >> beam.FlatMap(t.half_join)
        )
        edges = (
            {"shingles": shingled, "halves": halves}
            | "JoinSecond" >> beam.CoGroupByKey()
            | "Verify" >> beam.ParDo(t.Verify(d.threshold))
        )
        clusters = edges | "AllEdges" >> beam.combiners.ToList() | "Clusters" >> beam.Map(t.build_clusters)
        _ = clusters | "WriteClusters" >> beam.Map(
            lambda c: t.write_json_value(f"{stats}/clusters.json", _cluster_summary(c))
        )
        near = AsSingleton(clusters)
    else:
        near = {}

    # 4. route: outliers and duplicates dropped, the rest annotated and sharded.
    routed = curated.ok | "Route" >> beam.ParDo(
        t.Route(n, spill), AsSingleton(limits), AsDict(exact), near
    ).with_outputs("dropped", main="ok")

    # Writers.
    _write_grouped(routed.ok, "Documents", lambda s: f"{work}/documents/{t.part_name(s, n)}", spill)
    dropped = (prepared.dropped, curated.dropped, routed.dropped) | "FlattenDropped" >> beam.Flatten()
    _write_grouped(dropped, "Dropped", lambda reason: f"{work}/dropped/{filters.reason_path(reason)}", spill)
    _ = (
        (prepared.rejected, curated.rejected)
        | "FlattenRejected" >> beam.Flatten()
        | "AllRejected" >> beam.Map(lambda r: (None, r))
        | "GroupRejected" >> beam.GroupByKey()
        | "WriteRejected"
        >> beam.MapTuple(
            lambda _, rs: t.write_sorted(
                f"{work}/rejected/rejected.jsonl", rs, lambda r: (tuple(r["_loc"]), r["reason"])
            )
        )
    )


def _limits(hists, docs: int, params: Params) -> dict[str, Any]:
    from components.clean import outliers

    return outliers.limits(hists, docs, params.outliers)


def _cluster_summary(clusters: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """Clusters of two or more documents: count, documents in them, size histogram, largest few."""
    sizes: dict[str, int] = {}
    for rep, size in clusters.values():
        if size > 1:  # a document left alone by the star clustering is no cluster
            sizes[rep] = size
    histogram: dict[str, int] = {}
    for size in sizes.values():
        histogram[str(size)] = histogram.get(str(size), 0) + 1
    largest = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {
        "clusters": len(sizes),
        "documents": sum(sizes.values()),
        "size_histogram": dict(sorted(histogram.items(), key=lambda kv: int(kv[0]))),
        "largest": [{"representative": rep, "size": size} for rep, size in largest],
    }


def _beam_counters(result) -> dict[str, int]:
    """The pipeline's ``clean`` counters (committed values); {} where the runner has no metrics."""
    try:
        from apache_beam.metrics.metric import MetricsFilter

        found = result.metrics().query(MetricsFilter().with_namespace("clean"))["counters"]
    except Exception as exc:  # noqa: BLE001 - metrics support differs between runners
        log.warning("clean: no Beam counters from this runner (%s)", exc)
        return {}
    out: dict[str, int] = {}
    for c in found:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(c.committed or 0)
    return dict(sorted(out.items()))


def run(
    input: str,
    output: str | os.PathLike,
    params: Params,
    decontaminate: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Clean the JSONL documents at ``input`` (file or folder URI) into ``output``; return the metrics.

    ``decontaminate``: optional JSONL files (one URI or several) of evaluation records: ``text`` (or,
    for QA rows, ``passage``), optional ``split`` and ``label``. Documents sharing a long n-gram
    with a record of ``params.decontaminate.splits`` are dropped as ``contaminated``, and labelled
    texts are checked for duplicates with conflicting labels (QA rows carry no label: none).

    Bad input raises ``InputError`` (one line naming the file; ``output`` is left as it was):
    always for a single file that is not JSONL (CSV, Parquet ...: ingest converts those) and for
    no JSONL at all; with ``params.on_bad_input == "error"`` (the default) also for an unsupported
    file in an input folder (before any work), a shard that stops being readable (a truncated or
    corrupt gzip: file and line named) and a run that keeps nothing (both found once the pipeline
    has read everything, before the output is put in place). With ``"quarantine"`` the unreadable
    rest of a shard is one rejected ``unreadable`` record (see ``readers`` for how it is counted),
    unsupported files are skipped, and both are listed in the report's ``files`` section.
    """
    inputs = readers.discover(input)
    strict = params.on_bad_input == "error"
    if inputs.skipped:
        if strict:
            raise InputError(readers.unsupported_message(inputs))
        log.warning("clean: skipping %d unsupported files: %s", len(inputs.skipped), inputs.skipped)
    evals = [decontaminate] if isinstance(decontaminate, str) else list(decontaminate or ())
    for uri in evals:
        if not list_files(uri):
            raise readers.NoInputFiles(f"clean: no evaluation file at {uri}")
    files, prefix = inputs.files, inputs.prefix
    # Beam is imported once the input checks passed: a refusal costs no second of Beam start-up.
    import apache_beam as beam

    from components.clean.pipeline import part_name

    log.info("clean: %d input files under %s, runner %s", len(files), input, params.runner)
    start = time.monotonic()
    with _work_dir(output) as work:
        fs, root = fsspec.core.url_to_fs(work)
        for sub in (a.DOCUMENTS, a.DROPPED, a.REJECTED, STATS_DIR, SPILL_DIR):
            fs.makedirs(f"{root}/{sub}", exist_ok=True)
        p = beam.Pipeline(options=pipeline_options(params))
        build_pipeline(p, files, prefix, work, params, evals)
        result = p.run()
        result.wait_until_finish()
        counters = _beam_counters(result)
        # Empty groups write nothing: create the empty shards and rejected file so the layout is fixed.
        for s in range(params.num_shards):
            path = f"{root}/documents/{part_name(s, params.num_shards)}"
            if not fs.exists(path):
                fs.touch(path)
        if not fs.exists(f"{root}/rejected/rejected.jsonl"):
            fs.touch(f"{root}/rejected/rejected.jsonl")
        skipped = [inputs.relative(f) for f in inputs.skipped]
        report, extra = make_report(
            work, params, counters, with_eval=bool(evals), files_read=len(files), skipped=skipped
        )
        problem = bad_input(report, input, prefix)
        if problem:
            if strict:  # raised inside _work_dir: the output is left as it was
                raise InputError(problem)
            log.warning("%s (on_bad_input: quarantine: going on)", problem)
        write_reports(work, report, params)
        metrics = _write_metrics(work, {**_counts_only(report), **extra})
    seconds = time.monotonic() - start
    log.info(
        "clean: input %d, kept %d, dropped %d, rejected %d in %.1fs (%.0f docs/s)",
        report["input"],
        report["kept"],
        sum(report["dropped"].values()),
        sum(report["rejected"].values()),
        seconds,
        report["input"] / max(seconds, 1e-9),
    )
    return metrics


def bad_input(report: dict[str, Any], input: str, prefix: str) -> str | None:
    """The one-line complaint about a run's input, from its report: the first unreadable shard
    (file and line), else a run that kept nothing; None when neither happened."""
    unreadable = report["files"]["unreadable"]
    if unreadable:
        u = unreadable[0]
        more = len(unreadable) - 1
        others = f"; {more} more unreadable: {', '.join(x['file'] for x in unreadable[1:4])}" if more else ""
        return (
            f"clean: {prefix}{u['file']}: corrupt or truncated at line {u['line']} "
            f"({u['lines_read']} lines read, {u['error']}){others}; set clean.on_bad_input: quarantine "
            "to count the unreadable rest as rejected and go on"
        )
    if report["kept"] == 0:
        reasons = Counter({f"rejected {k}": v for k, v in report["rejected"].items()})
        reasons.update({f"dropped {k}": v for k, v in report["dropped"].items()})
        top = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        why = f" ({top})" if top else ""
        return (
            f"clean: kept nothing from {input}: {report['input']} input records{why}; "
            "set clean.on_bad_input: quarantine to write the empty result anyway"
        )
    return None


@contextlib.contextmanager
def _work_dir(output: str | os.PathLike) -> Iterator[str]:
    """The folder the pipeline writes into, replacing ``output`` on success.

    A local output goes through ``atomic_output_dir`` (a sibling temp folder, renamed into place).
    A remote one (s3://, gs://) gets a remote sibling ``<output>.tmp-<id>``, not a local temporary
    folder: with a distributed runner the workers write the files, and they cannot see the
    launcher's disk. It is moved over ``output`` at the end (object stores have no atomic rename).
    """
    if not is_remote(output):
        with atomic_output_dir(output) as out:
            yield str(out)
        return
    fs, root = fsspec.core.url_to_fs(str(output))
    protocol = str(output).split("://", 1)[0]
    tmp_root = f"{root.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield f"{protocol}://{tmp_root}"
    except BaseException:
        if fs.exists(tmp_root):
            fs.rm(tmp_root, recursive=True)
        raise
    if fs.exists(root):
        fs.rm(root, recursive=True)
    # File by file: a recursive mv also copies the stores' folder marker keys, which S3
    # implementations do not all keep (CopyObject then fails with NoSuchKey).
    for path in fs.find(tmp_root):
        fs.mv(path, f"{root.rstrip('/')}/{path[len(tmp_root) :].lstrip('/')}")
    if fs.exists(tmp_root):
        fs.rm(tmp_root, recursive=True)


def _write_metrics(work: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """``write_metrics`` into ``work`` (a folder or URI; the shared helper takes local folders)."""
    if not is_remote(work):
        return write_metrics(work, metrics)
    with tempfile.TemporaryDirectory(prefix="clean-metrics-") as tmp:
        cleaned = write_metrics(tmp, metrics)
        fs, root = fsspec.core.url_to_fs(work)
        fs.put(f"{tmp}/metrics.json", f"{root}/metrics.json")
    return cleaned


def _counts_only(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("input", "kept", "dropped", "rejected", "pii", "dedup", "label_conflicts")
    out = {k: report[k] for k in keys if k in report}
    if isinstance(out.get("dedup"), dict):
        out["dedup"] = {k: v for k, v in out["dedup"].items() if isinstance(v, int)}
    if isinstance(out.get("label_conflicts"), dict):
        out["label_conflicts"] = out["label_conflicts"]["count"]
    return out
