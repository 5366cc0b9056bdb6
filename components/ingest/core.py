"""ingest: raw sources -> pretraining corpus, sentiment task set and monitoring batches.

Inputs
- ``news``: the news sample CSV (article_id, publish_date, article_source_link, title, subtitle,
  text). Each article becomes one pretraining document ``news:<article_id>``; title and subtitle
  lead the text as their own paragraphs (``params.news_title``).
- ``reviews``: the Rotten Tomatoes sample CSV (category, text, movie_name, ...). ``fresh`` ->
  positive, ``rotten`` -> negative; ``plot`` rows (plot summaries) form the drift batch.
  The labelled reviews are split by ``stable_fraction(text, seed)``: a ``heldout_fraction`` goes to
  the ``reviews`` monitoring batch, the rest to train/valid/test. Hashing the text (not the row
  order) makes the split order-independent and puts identical texts in the same split, so no
  sentence leaks between train and test. Identical texts are kept once (smallest id); texts that
  carry both labels are dropped. Review texts do NOT go into the pretraining corpus; the
  tokenize stage makes a separate task source of the train and valid texts (task-adaptive
  pretraining trains on the train ones and only scores the valid ones), so the pretrained model
  never trains on a valid or test sentence.
- ``inputs``: any number of URIs (local, s3://, gs:// via fsspec), each a file or a folder of
  JSONL / CSV / Parquet / TXT files, optionally .gz or .bz2 (see ``readers``). Each row becomes
  ``{id: "<source>:<row>", text, source, meta: <the other columns>}``.
- ``feedback``: a folder (local or in the data lake) of the flywheel's harvest files, labelled
  served predictions (``llm.feedback``): new train/valid task examples.

Outputs (one folder, written atomically; every JSONL sorted by id, keys sorted, so reruns are
byte-identical):
- ``corpus.jsonl``            {id, text, source, meta}
- ``task.jsonl``              {id, text, label, split}
- ``qa.jsonl``                cloze QA over the news articles (``llm.qa``, Hermann et al. 2015):
                              {id, article_id, split, prompt, response, question, answer, passage,
                              candidates}; split by a hash of article_id (``params.qa``), so no
                              article is in two splits. clean decontaminates the corpus against
                              the valid/test passages, so those articles never reach pretraining.
- ``batches/reviews.jsonl``   {id, text, label}
- ``batches/plots.jsonl``     {id, text}
- ``feedback.jsonl``          the data flywheel's audit: every row of the ``feedback`` folder's
                              harvest files with its ``outcome`` (``train``, ``valid``, or why it
                              was set aside; ``llm.feedback``); the kept ones are
                              task examples ``feedback:<request_id>:<item>`` with their
                              ``request_id``, never in the test split
- ``dataset.json``            the raw inputs' content hashes (MD5, as DVC records them) and their
                              combined ``version``
- ``metrics.json``            counts per source, split and label, QA questions and articles per
                              split, skipped rows per reason, and
                              ``dataset_version``
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from components.common import artifacts as a
from components.common.entry import InputError
from components.common.io import atomic_output_dir, write_json, write_jsonl
from components.common.lineage import dataset_version
from components.common.metrics import write_metrics
from components.common.seed import stable_fraction
from components.ingest import readers
from components.ingest.params import Params, Qa
from llm import feedback as flywheel
from llm import qa as qa_lib
from llm.qa import QAConfig

log = logging.getLogger("ingest")

LABELS = {"fresh": "positive", "rotten": "negative"}
SPLITS = ("train", "valid", "test")
HELDOUT = "heldout"


def doc_id(source: str, key: int | str) -> str:
    """A stable document id: ``<source>:<row key>`` (numbers zero-padded so ids sort by row)."""
    return f"{source}:{key:06d}" if isinstance(key, int) else f"{source}:{key}"


def assign_split(text: str, params: Params) -> str:
    """``heldout``, ``train``, ``valid`` or ``test`` for a labelled text, fixed by (text, seed).

    One uniform number u = stable_fraction(text, seed) in [0, 1): u < heldout_fraction is held out;
    the rest is rescaled to [0, 1) and cut by the train/valid/test fractions.
    """
    u = stable_fraction(text, params.seed)
    h = params.heldout_fraction
    if u < h:
        return HELDOUT
    v = (u - h) / (1.0 - h)
    if v < params.train_fraction:
        return "train"
    if v < params.train_fraction + params.valid_fraction:
        return "valid"
    return "test"


def news_text(row: dict[str, str], with_title: bool) -> str:
    """Title, subtitle and body as paragraphs (empty parts left out); "" when the body is empty."""
    body = (row.get("text") or "").strip()
    if not body:
        return ""
    parts = [(row.get("title") or "").strip(), (row.get("subtitle") or "").strip()] if with_title else []
    return "\n\n".join([p for p in parts if p] + [body])


def read_news(
    uri: str, params: Params, skipped: Counter, articles: list[dict[str, str]] | None = None
) -> list[dict[str, Any]]:
    """The news CSV's pretraining documents; ``articles`` (when given) gets every good raw row."""
    docs = []
    for row_no, row in readers.read_csv(uri, skipped):
        if articles is not None:
            articles.append(row)
        text = news_text(row, params.news_title)
        if not text:
            skipped["missing_text"] += 1
            continue
        article = (row.get("article_id") or "").strip()
        key: int | str = int(article) if article.isdigit() else (article or row_no)
        meta = {
            "article_id": article,
            "publish_date": row.get("publish_date", ""),
            "url": row.get("article_source_link", ""),
        }
        docs.append({"id": doc_id("news", key), "text": text, "source": "news", "meta": meta})
    return docs


def read_reviews(uri: str, skipped: Counter) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(labelled reviews {id, text, label}, plot summaries {id, text})`` from the sample CSV."""
    labelled, plots = [], []
    for row_no, row in readers.read_csv(uri, skipped):
        text = (row.get("text") or "").strip()
        category = (row.get("category") or "").strip()
        if not text:
            skipped["missing_text"] += 1
        elif category == "plot":
            plots.append({"id": doc_id("plots", row_no), "text": text})
        elif category in LABELS:
            labelled.append({"id": doc_id("reviews", row_no), "text": text, "label": LABELS[category]})
        else:
            skipped["unknown_category"] += 1
    return labelled, plots


def dedup_labelled(examples: Iterable[dict[str, Any]], skipped: Counter) -> list[dict[str, Any]]:
    """One example per text (smallest id); texts seen with two labels are dropped altogether."""
    by_text: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ex in examples:
        by_text[ex["text"]].append(ex)
    kept = []
    for group in by_text.values():
        if len({ex["label"] for ex in group}) > 1:
            skipped["conflicting_label"] += len(group)
            continue
        group.sort(key=lambda ex: ex["id"])
        kept.append(group[0])
        skipped["duplicate_text"] += len(group) - 1
    return kept


def read_inputs(uri: str, params: Params, skipped: dict[str, Counter]) -> list[dict[str, Any]]:
    """Documents from one generic URI (file or folder); bad rows counted per source."""
    files, unsupported = readers.discover(uri)
    if unsupported:
        log.warning("%s: %d unsupported files ignored (e.g. %s)", uri, len(unsupported), unsupported[0])
        skipped["_files"]["unsupported_format"] += len(unsupported)
    docs = []
    for path, source, fmt in files:
        n0 = len(docs)
        for key, fields in readers.read_rows(path, fmt, params.text_column, skipped[source]):
            text = fields.pop(params.text_column)
            meta = readers.jsonable(fields)
            docs.append({"id": doc_id(source, key), "text": text, "source": source, "meta": meta})
        log.info("%s: %d documents", path, len(docs) - n0)
    return docs


def build_qa(articles: Iterable[dict[str, str]], qa: Qa) -> dict[str, Any]:
    """``{"rows": QA rows sorted by id, "skipped": {reason: articles/questions}}`` (``llm.qa``)."""
    skipped: Counter = Counter()
    config = QAConfig(
        valid_fraction=qa.valid_fraction,
        test_fraction=qa.test_fraction,
        max_passage_words=qa.max_passage_words,
        max_questions_per_article=qa.max_questions_per_article,
        seed=qa.seed,
    )
    rows = qa_lib.build_qa(articles, config, skipped)
    return {"rows": rows, "skipped": dict(sorted(skipped.items()))}


def qa_metrics(qa_rows: dict[str, Any]) -> dict[str, Any]:
    """Questions and articles per split, and the skip reasons of the QA construction."""
    rows = qa_rows["rows"]
    return {
        "questions": len(rows),
        "by_split": {s: sum(r["split"] == s for r in rows) for s in SPLITS},
        "articles_by_split": {s: len({r["article_id"] for r in rows if r["split"] == s}) for s in SPLITS},
        "skipped": qa_rows["skipped"],
    }


def _counts(items: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(items).items()))


def run(
    news: str | None,
    reviews: str | None,
    output: str | os.PathLike,
    params: Params,
    inputs: Sequence[str] = (),
    feedback: str | None = None,
) -> dict[str, Any]:
    """Ingest the given sources into ``output`` (see the module docstring); return the metrics.

    ``news`` / ``reviews``: the sample CSV paths or URIs (None to leave one out); ``inputs``: more
    document URIs (files or folders); ``feedback``: the flywheel's folder of harvest files (None
    or an empty folder: no feedback). At least one source must be given.
    """
    if not (news or reviews or inputs):
        raise InputError("ingest: nothing to read (give news, reviews or inputs)")
    skipped: dict[str, Counter] = defaultdict(Counter)
    corpus: list[dict[str, Any]] = []
    articles: list[dict[str, str]] = []
    if news:
        corpus += read_news(news, params, skipped["news"], articles)
        log.info("%s: %d news documents", news, len(corpus))
    for uri in inputs:
        corpus += read_inputs(uri, params, skipped)

    # Ids are the join key of every later stage: refuse the second record with a taken id.
    seen: set[str] = set()
    unique = []
    for doc in corpus:
        if doc["id"] in seen:
            skipped[doc["source"]]["duplicate_id"] += 1
        else:
            seen.add(doc["id"])
            unique.append(doc)
    corpus = sorted(unique, key=lambda d: d["id"])

    task: list[dict[str, Any]] = []
    heldout: list[dict[str, Any]] = []
    plots: list[dict[str, Any]] = []
    if reviews:
        labelled, plots = read_reviews(reviews, skipped["reviews"])
        for ex in dedup_labelled(labelled, skipped["reviews"]):
            split = assign_split(ex["text"], params)
            if split == HELDOUT:
                heldout.append(ex)
            else:
                task.append({**ex, "split": split})
        log.info("%s: %d task examples, %d held out, %d plots", reviews, len(task), len(heldout), len(plots))
    audit: list[dict[str, Any]] = []
    feedback_counts: dict[str, Any] = {
        "files": 0,
        "rows": 0,
        "added": {"train": 0, "valid": 0},
        "set_aside": {},
    }
    if feedback:
        existing: dict[str, list[str]] = defaultdict(list)
        for ex in task:
            existing[ex["split"]].append(ex["text"])
        existing[HELDOUT] = [ex["text"] for ex in heldout]
        added, audit, feedback_counts = flywheel.merge(
            flywheel.read_rows(feedback),
            existing,
            sorted(LABELS.values()),
            params.train_fraction,
            params.valid_fraction,
            params.seed,
        )
        feedback_counts = {"files": len(flywheel.feedback_files(feedback)), **feedback_counts}
        task += added
        log.info(
            "%s: %d feedback rows, %d new train and %d new valid examples, set aside: %s",
            feedback,
            feedback_counts["rows"],
            feedback_counts["added"]["train"],
            feedback_counts["added"]["valid"],
            feedback_counts["set_aside"] or "none",
        )
    task.sort(key=lambda r: r["id"])
    heldout.sort(key=lambda r: r["id"])
    plots.sort(key=lambda r: r["id"])

    qa_rows = build_qa(articles, params.qa) if params.qa.enabled else {"rows": [], "skipped": {}}

    metrics = {
        "qa": qa_metrics(qa_rows),
        "corpus": {"documents": len(corpus), "by_source": _counts(d["source"] for d in corpus)},
        "task": {
            "examples": len(task),
            "by_split": {s: sum(r["split"] == s for r in task) for s in SPLITS},
            "by_label": _counts(r["label"] for r in task),
            "by_split_label": {s: _counts(r["label"] for r in task if r["split"] == s) for s in SPLITS},
        },
        "feedback": feedback_counts,
        "batches": {
            "reviews": {"examples": len(heldout), "by_label": _counts(r["label"] for r in heldout)},
            "plots": {"examples": len(plots)},
        },
        "skipped": {src: dict(sorted(c.items())) for src, c in sorted(skipped.items()) if c},
        "skipped_total": sum(sum(c.values()) for c in skipped.values()),
    }
    # The raw data's content hashes travel with every later artifact (release bundle, KFP metadata).
    feedback_paths = flywheel.feedback_files(feedback) if feedback else []
    dataset = dataset_version([uri for uri in (news, reviews, *inputs) if uri] + feedback_paths)
    # The harvest files' own version (of none: the same on a run without a feedback folder).
    dataset["feedback_version"] = dataset_version(feedback_paths)["version"]
    metrics["dataset_version"] = dataset["version"]
    with atomic_output_dir(output) as out:
        reviews_batch, plots_batch = a.MONITOR_BATCHES
        write_json(Path(out) / a.DATASET, dataset)
        write_jsonl(Path(out) / a.CORPUS, corpus)
        write_jsonl(Path(out) / a.TASK, task)
        write_jsonl(Path(out) / a.QA, qa_rows["rows"])
        write_jsonl(Path(out) / a.FEEDBACK, audit)
        write_jsonl(Path(out) / a.BATCHES / f"{reviews_batch}.jsonl", heldout)
        write_jsonl(Path(out) / a.BATCHES / f"{plots_batch}.jsonl", plots)
        metrics = write_metrics(out, metrics)
    log.info(
        "ingest: %d corpus documents, %d task examples, %d QA questions, %d held-out reviews, %d plots, %d skipped",
        len(corpus),
        len(task),
        len(qa_rows["rows"]),
        len(heldout),
        len(plots),
        metrics["skipped_total"],
    )
    return metrics
