"""The data flywheel's rules: served predictions whose true labels came back (POST /feedback),
harvested from the prediction log by ``monitoring.flywheel``, become task examples (the ingest
stage), and the monitor counts, with the same rules, how many a harvest would add before it
starts a retraining (``monitoring.retrain``).

A harvest file (``feedback-<window end>.jsonl`` in the feedback folder, local or in the data lake)
holds one row per labelled prediction: ``{id: "feedback:<request_id>:<item>", request_id, item,
text, label, prediction, model_version, logged_at, labelled_at}``. Each row read ends in exactly
one outcome (so rows read = added + set aside, and a test can count it):

- ``train`` / ``valid``: a new task example ``{id, text, label, split, request_id}``; the split is
  fixed by a hash of the text, in the train : valid proportion of ``ingest``'s fractions. Never
  ``test``: the test split stays the one the reviews CSV gives, so every model version is scored
  on the same examples and the gate compares like with like;
- set aside, with a stable reason: ``malformed:<field>`` (no text, no request id, a label that
  is not a task label), ``duplicate_feedback`` (the same request id and item twice),
  ``malformed:item``, ``conflicting_label`` (the same text came back with two labels: none of them is kept),
  ``duplicate_of_<split>`` (the text, compared with case and white space folded, is already a
  train / valid / test example or a held-out monitoring review: a second copy would leak into or
  double-count a split).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from components.common.io import list_files, read_jsonl
from components.common.seed import stable_fraction

FILE_PREFIX = "feedback-"  # harvest files; anything else in the folder (a README) is not read
SOURCE = "feedback"
TRAIN, VALID = "train", "valid"


def fold(text: str) -> str:
    """The comparison key of a text: case and runs of white space folded."""
    return " ".join(text.split()).casefold()


def feedback_files(uri: str) -> list[str]:
    """The harvest files under ``uri`` (a folder, local or remote), sorted; none when the folder
    does not exist yet."""
    try:
        files = list_files(uri, (".jsonl",))
    except FileNotFoundError:
        return []
    return [p for p in files if p.rsplit("/", 1)[-1].startswith(FILE_PREFIX)]


def read_rows(uri: str) -> list[dict[str, Any]]:
    """Every row of every harvest file under ``uri``, in file order."""
    return [row for path in feedback_files(uri) for row in read_jsonl(path)]


def feedback_split(text: str, train_fraction: float, valid_fraction: float, seed: int) -> str:
    """``train`` or ``valid`` for a feedback text, fixed by (text, seed)."""
    share = train_fraction / (train_fraction + valid_fraction)
    return TRAIN if stable_fraction(text, seed) < share else VALID


def malformed(row: Mapping[str, Any], labels: Sequence[str]) -> str | None:
    """Why a harvest row cannot be an example (``malformed:<field>``), or None."""
    if not isinstance(row.get("text"), str) or not row["text"].strip():
        return "malformed:text"
    if not isinstance(row.get("request_id"), str) or not row["request_id"]:
        return "malformed:request_id"
    item = row.get("item", 0)
    if not isinstance(item, int) or isinstance(item, bool) or item < 0:
        return "malformed:item"
    if row.get("label") not in labels:
        return "malformed:label"
    return None


def screen(
    rows: Iterable[Mapping[str, Any]], existing: Mapping[str, Iterable[str]], labels: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(audit, kept)``: one audit row per row read (the harvest row plus ``outcome``: the reason
    it is set aside, None for a kept one), and the kept rows (one per new text), in order.

    ``existing``: ``{split or "heldout": texts}`` already in the task data."""
    taken: dict[str, str] = {}
    for split, texts in existing.items():
        for text in texts:
            taken.setdefault(fold(text), split)
    audit: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    seen_ids: set[tuple[str, int]] = set()
    for row in rows:
        row = dict(row)
        reason = malformed(row, labels)
        if reason is None:
            key = (row["request_id"], int(row.get("item", 0)))
            if key in seen_ids:
                reason = "duplicate_feedback"
            seen_ids.add(key)
        if reason is None and fold(row["text"]) in taken:
            reason = f"duplicate_of_{taken[fold(row['text'])]}"
        row["outcome"] = reason
        audit.append(row)
        if reason is None:
            candidates.append(row)
    # The same text twice in the feedback: one example if the labels agree, none if they do not.
    by_text: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in candidates:
        by_text[fold(row["text"])].append(row)
    kept = []
    for group in by_text.values():
        group.sort(key=lambda r: (r["request_id"], int(r.get("item", 0))))
        if len({r["label"] for r in group}) > 1:
            for r in group:
                r["outcome"] = "conflicting_label"
            continue
        for r in group[1:]:
            r["outcome"] = "duplicate_feedback"
        kept.append(group[0])
    return audit, kept


def merge(
    rows: Iterable[Mapping[str, Any]],
    existing: Mapping[str, Iterable[str]],
    labels: Sequence[str],
    train_fraction: float,
    valid_fraction: float,
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """``(new task examples, one audit row per row read, counts)``: ``screen``, then each kept row
    goes to train or valid (``feedback_split``); the audit row's ``outcome`` is ``train``,
    ``valid`` or the reason it was set aside."""
    audit, kept = screen(rows, existing, labels)
    examples = []
    for first in kept:
        split = feedback_split(first["text"], train_fraction, valid_fraction, seed)
        first["outcome"] = split
        examples.append(
            {
                "id": f"{SOURCE}:{first['request_id']}:{int(first.get('item', 0))}",
                "text": first["text"],
                "label": first["label"],
                "split": split,
                "request_id": first["request_id"],
            }
        )
    outcomes = Counter(r["outcome"] for r in audit)
    counts = {
        "rows": len(audit),
        "added": {s: outcomes.get(s, 0) for s in (TRAIN, VALID)},
        "set_aside": {k: v for k, v in sorted(outcomes.items()) if k not in (TRAIN, VALID)},
    }
    audit.sort(key=lambda r: (str(r.get("request_id")), str(r.get("item"))))
    return sorted(examples, key=lambda r: r["id"]), audit, counts
