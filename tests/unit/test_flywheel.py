"""The data flywheel: labelled served predictions -> harvest files -> new task examples.

Harvest counts every prediction once (a row the log holds twice, labelled or not, already
harvested or new), and ingest gives every harvested row one outcome: train, valid, or set aside
with a reason; the test split never changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from components.ingest.core import run as ingest
from components.ingest.params import Params
from llm.feedback import fold, merge
from monitoring.flywheel import feedback_version, harvest, harvested_keys
from serving.prediction_log import PredictionLog
from tests.unit.test_ingest import _jsonl, _reviews_csv

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _prediction(rid: str, item: int, text: str, ts: datetime) -> dict:
    return {
        "request_id": rid,
        "item": item,
        "ts": ts,
        "text": text,
        "prediction": "positive",
        "score": 0.9,
        "latency_ms": 10.0,
        "compute_ms": 2.0,
        "tokens": 12,
        "model_version": "v1",
    }


def test_harvest_counts_every_prediction_once_and_never_twice(tmp_path: Path):
    log = PredictionLog(str(tmp_path / "log"), background=False)
    rows = [_prediction(f"r{i}", 0, f"served text number {i}", T0 + timedelta(minutes=i)) for i in range(10)]
    rows.append(_prediction("r10", 0, "a second text in one request", T0))
    rows.append(_prediction("r10", 1, "and a third one", T0))
    log.predictions.append(rows)
    log.predictions.append([rows[3]])  # the same (request id, item) written twice
    # labels for r0..r5 and r10:1; r2 labelled twice (the latest counts)
    labels = [
        {"request_id": f"r{i}", "item": 0, "ts": T0 + timedelta(hours=1), "label": "negative"}
        for i in range(6)
    ]
    labels.append({"request_id": "r2", "item": 0, "ts": T0 + timedelta(hours=2), "label": "positive"})
    labels.append({"request_id": "r10", "item": 1, "ts": T0 + timedelta(hours=1), "label": "positive"})
    log.labels.append(labels)
    log.close()
    feedback = tmp_path / "feedback"
    end, now = T0 + timedelta(days=1), T0 + timedelta(days=1)

    first = harvest(str(tmp_path / "log"), str(feedback), end, now)
    assert first["predictions"] == 12 and first["duplicate_rows"] == 1
    assert (first["labelled"], first["unlabelled"], first["already_harvested"], first["written"]) == (
        7,
        5,
        0,
        7,
    )
    written = _jsonl(Path(first["file"]))
    assert Path(first["file"]).name == "feedback-20261202T100000Z.jsonl"
    assert [(r["request_id"], r["item"]) for r in written] == sorted(
        [(f"r{i}", 0) for i in range(6)] + [("r10", 1)]
    )
    assert next(r for r in written if r["request_id"] == "r2")["label"] == "positive"  # the latest label
    assert written[0] == {
        "id": "feedback:r0:0",
        "request_id": "r0",
        "item": 0,
        "text": "served text number 0",
        "label": "negative",
        "prediction": "positive",
        "model_version": "v1",
        "logged_at": "2026-12-01T10:00:00+00:00",
    }

    again = harvest(str(tmp_path / "log"), str(feedback), end + timedelta(hours=1), now + timedelta(hours=1))
    assert (again["already_harvested"], again["written"], again["file"]) == (7, 0, None)
    assert again["version"] == first["version"] == feedback_version(str(feedback))

    log = PredictionLog(str(tmp_path / "log"), background=False)
    log.labels.append([{"request_id": "r7", "item": 0, "ts": now + timedelta(hours=2), "label": "negative"}])
    log.close()
    late = harvest(str(tmp_path / "log"), str(feedback), end + timedelta(hours=3), now + timedelta(hours=3))
    assert (late["labelled"], late["already_harvested"], late["written"]) == (8, 7, 1)
    assert late["version"] != first["version"]
    assert len(harvested_keys(str(feedback))) == 8
    assert harvest(str(tmp_path / "empty-log"), str(feedback), end)["predictions"] == 0


def test_merge_gives_every_row_one_outcome_and_never_the_test_split():
    existing = {"train": ["A known train review"], "test": ["The test review."], "heldout": ["held out"]}
    rows = [
        {"request_id": "a", "item": 0, "text": "a brand new review", "label": "positive"},
        {"request_id": "b", "item": 0, "text": "  a known   TRAIN review ", "label": "negative"},
        {"request_id": "c", "item": 0, "text": "the test review.", "label": "positive"},
        {"request_id": "d", "item": 0, "text": "Held out", "label": "positive"},
        {"request_id": "a", "item": 0, "text": "a brand new review", "label": "positive"},
        {"request_id": "e", "item": 0, "text": "said twice, two labels", "label": "positive"},
        {"request_id": "f", "item": 0, "text": "said twice, two labels", "label": "negative"},
        {"request_id": "g", "item": 0, "text": "said twice, one label", "label": "negative"},
        {"request_id": "h", "item": 0, "text": "said twice, one label", "label": "negative"},
        {"request_id": "i", "item": 0, "text": "", "label": "negative"},
        {"request_id": "j", "item": 0, "text": "fine text", "label": "neutral"},
        {"item": 0, "text": "no request id", "label": "negative"},
        {"request_id": "k", "item": "zero", "text": "bad item", "label": "negative"},
    ] + [{"request_id": f"n{i}", "item": 0, "text": f"new text {i}", "label": "positive"} for i in range(200)]
    examples, audit, counts = merge(rows, existing, ["negative", "positive"], 0.8, 0.1, 0)
    outcomes = {(r.get("request_id"), r["text"]): r["outcome"] for r in audit}
    assert outcomes[("b", "  a known   TRAIN review ")] == "duplicate_of_train"
    assert outcomes[("c", "the test review.")] == "duplicate_of_test"
    assert outcomes[("d", "Held out")] == "duplicate_of_heldout"
    assert (
        outcomes[("e", "said twice, two labels")]
        == outcomes[("f", "said twice, two labels")]
        == "conflicting_label"
    )
    assert outcomes[("g", "said twice, one label")] in ("train", "valid")
    assert outcomes[("h", "said twice, one label")] == "duplicate_feedback"
    assert [r["outcome"] for r in audit if r.get("request_id") == "a"].count("duplicate_feedback") == 1
    assert outcomes[("i", "")] == "malformed:text" and outcomes[("j", "fine text")] == "malformed:label"
    assert outcomes[(None, "no request id")] == "malformed:request_id"
    assert outcomes[("k", "bad item")] == "malformed:item"
    # Every row read has one outcome; the kept ones are the examples; none goes to test.
    assert counts["rows"] == len(rows) == len(audit)
    assert sum(counts["added"].values()) + sum(counts["set_aside"].values()) == len(rows)
    assert sum(counts["added"].values()) == len(examples) == 202
    assert {e["split"] for e in examples} == {"train", "valid"}
    assert 0.05 < counts["added"]["valid"] / len(examples) < 0.2  # the train : valid proportion, 8 : 1
    assert all(e["id"] == f"feedback:{e['request_id']}:0" for e in examples)
    assert fold(" A\tb ") == "a b"


def test_ingest_adds_the_feedback_to_train_and_valid_and_keeps_the_test_split(tmp_path: Path):
    reviews = _reviews_csv(
        tmp_path / "reviews.csv",
        [["fresh" if i % 2 else "rotten", f"review number {i} is here", "m", "True"] for i in range(300)],
    )
    before = tmp_path / "before"
    ingest(None, str(reviews), before, Params())
    feedback = tmp_path / "feedback"
    feedback.mkdir()
    (feedback / "README.md").write_text("not read")
    test_text = next(r["text"] for r in _jsonl(before / "task.jsonl") if r["split"] == "test")
    rows = [
        {"request_id": f"q{i}", "item": 0, "text": f"a plot summary {i}", "label": "negative"}
        for i in range(40)
    ]
    rows.append({"request_id": "dup", "item": 0, "text": test_text, "label": "positive"})
    (feedback / "feedback-20261202T000000Z.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    after = tmp_path / "after"
    metrics = ingest(None, str(reviews), after, Params(), feedback=str(feedback))

    old, new = _jsonl(before / "task.jsonl"), _jsonl(after / "task.jsonl")
    assert [r for r in new if r["split"] == "test"] == [r for r in old if r["split"] == "test"]
    added = [r for r in new if r["id"].startswith("feedback:")]
    assert len(added) == 40 and {r["split"] for r in added} <= {"train", "valid"}
    assert all(r["id"] == f"feedback:{r['request_id']}:0" for r in added)
    assert metrics["feedback"] == {
        "files": 1,
        "rows": 41,
        "added": {
            "train": sum(r["split"] == "train" for r in added),
            "valid": sum(r["split"] == "valid" for r in added),
        },
        "set_aside": {"duplicate_of_test": 1},
    }
    audit = _jsonl(after / "feedback.jsonl")
    assert (
        len(audit) == 41
        and next(r for r in audit if r["request_id"] == "dup")["outcome"] == "duplicate_of_test"
    )
    dataset = json.loads((after / "dataset.json").read_text())
    assert dataset["feedback_version"] == feedback_version(str(feedback))
    assert dataset["version"] != json.loads((before / "dataset.json").read_text())["version"]
    assert any(name.endswith("feedback-20261202T000000Z.jsonl") for name in dataset["files"])
    assert metrics["task"]["examples"] == len(old) + 40
