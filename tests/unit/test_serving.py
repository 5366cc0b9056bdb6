"""serving: request validation (every client mistake is a 4xx, never a 500), the model version,
the micro-batcher, the Parquet prediction log, and the FastAPI app on the real (tiny) classifier:
every response names the model version and a request id, N requests give N log rows, labels are
attached by request id (404 for an id not served, 409 for a contradicting label, a repeat is
written once), /metrics counts what happened; hostile bodies (focused cases and a seeded fuzz)
get a 4xx with a message and a request id, never a 500, and the server still answers after."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from components.common.params import ParamsError, from_dict
from llm.served import MODEL_FILES, Predictions, ServedModel, load_model, model_version
from monitoring.window import attach_labels, read_window
from serving.batcher import MicroBatcher
from serving.prediction_log import (
    LABELS,
    PREDICTIONS,
    ConflictingLabel,
    ParquetLog,
    PredictionLog,
    ServedRequests,
    SharedServedRequests,
    UnknownRequest,
)
from serving.settings import Settings
from serving.validation import (
    Feedback,
    RequestError,
    check_content_type,
    check_request_id,
    json_depth,
    parse_feedback,
    parse_json,
    parse_predict,
)
from tests.serving_fixtures import shared_model_dir

PARAMS = Settings(max_text_chars=50, max_batch_texts=4, max_body_bytes=2000)


# --- validation (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"text": ""}, 422, "text is empty"),
        ({"text": "   \n"}, 422, "text is empty"),
        ({"text": 5}, 422, "text must be a string, got int"),
        ({"text": None}, 422, "text must be a string, got NoneType"),
        ({"text": "x" * 51}, 413, "text has 51 characters, over the limit of 50"),
        ({"texts": ["a", "b", "c", "d", "e"]}, 413, "texts has 5 items, over the limit of 4"),
        ({"texts": []}, 422, "texts is empty"),
        ({"texts": "one"}, 422, "texts must be a list of strings, got str"),
        ({"texts": ["ok", 3]}, 422, "texts[1] must be a string, got int"),
        ({"texts": ["ok", ""]}, 422, "texts[1] is empty"),
        ({"text": "a", "texts": ["b"]}, 422, 'send exactly one of "text"'),
        ({}, 422, 'send exactly one of "text"'),
        ({"txt": "a"}, 422, "unknown field 'txt'"),
        (["a"], 422, "request body must be a JSON object, got list"),
        ({"text": "\ud800 lone surrogate"}, 422, "not valid Unicode"),
        ({"text": "\0\0\0"}, 422, "text has nothing visible"),
        ({"text": "\x01\x7f\u200b\ufeff \t"}, 422, "text has nothing visible"),
        ({"text": "fine\0film"}, 422, "text contains a NUL character (at 4)"),
        ({"texts": ["ok", "\0"]}, 422, "texts[1] has nothing visible"),
        ({"t" * 5000: "a"}, 422, "unknown field 'tttttttt"),
    ],
)
def test_bad_predict_requests_are_4xx_with_a_message(payload, status, message):
    with pytest.raises(RequestError) as exc:
        parse_predict(payload, PARAMS)
    assert exc.value.status == status
    assert message in exc.value.message
    assert len(exc.value.message) < 200  # a huge client value is not echoed back


def test_good_predict_requests():
    assert parse_predict({"text": "fine film"}, PARAMS).texts == ["fine film"]
    assert parse_predict({"text": "fine film"}, PARAMS).single
    batch = parse_predict({"texts": ["a", "b", "c", "d"]}, PARAMS)
    assert batch.texts == ["a", "b", "c", "d"] and not batch.single
    assert parse_predict({"text": "x" * 50}, PARAMS).texts == ["x" * 50]  # the limit itself is allowed
    assert parse_predict({"text": "tab\there, café ☕"}, PARAMS).texts == ["tab\there, café ☕"]


def test_json_body_and_request_id_checks():
    assert parse_json(b'{"text": "a"}', 100) == {"text": "a"}
    for body, status in ((b"nope", 400), (b"", 400), (b"\xff\xfe", 400), (b"{" + b" " * 200 + b"}", 413)):
        with pytest.raises(RequestError) as exc:
            parse_json(body, 100)
        assert exc.value.status == status
    assert check_request_id("abc-1.2:3_x") == "abc-1.2:3_x"
    assert check_request_id(None) is None
    with pytest.raises(RequestError):
        check_request_id("has space")
    with pytest.raises(RequestError):
        check_request_id("trailing-newline\n")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 33 + b"]" * 33, "nests 33 levels deep, over the limit of 32"),
        (b'{"texts": ' + b"[" * 40, "nests 41 levels deep"),  # unbalanced: measured before parsing
        (b'{"text": ' + b"9" * 5000 + b"}", "number of 5000 characters, over the limit of 100"),
        (b'{"text": 1' + b"0" * 200 + b".5}", "number of 203 characters"),
        (b'{"text": NaN}', "NaN is not a JSON value"),
        (b'{"text": -Infinity}', "-Infinity is not a JSON value"),
        (b'{"text": "a", "text": "b"}', "the key 'text' twice"),
        (b'\xef\xbb\xbf{"text": "a"}', "byte order mark"),
        (b'{"text": "caf\xe9"}', "not valid UTF-8 (byte 0xe9 at offset 13)"),
        (b'{"text": "\xed\xa0\x80"}', "not valid UTF-8"),  # a surrogate encoded in the bytes
        (json.dumps({"text": "a"}).encode("utf-16"), "not valid UTF-8"),
        (b"\x00", "not valid JSON"),
        (b"  \n ", "empty"),
    ],
)
def test_hostile_json_is_400_before_the_parser_can_fail(body, message):
    with pytest.raises(RequestError) as exc:
        parse_json(body, 10_000, max_depth=32)
    assert exc.value.status == 400
    assert message in exc.value.message


def test_json_depth_counts_brackets_outside_strings():
    assert json_depth(b'"x"') == 0 and json_depth(b"[]") == 1 and json_depth(b'{"a": {"b": [{}]}}') == 4
    assert json_depth(b'["[[[[", "\\"[[", "\\\\"]') == 1  # brackets and escaped quotes in strings
    assert json_depth(b'[[["unterminated [[[[') == 3
    assert json_depth(b'"\\' * 1000) == 0  # every quote escaped: one unterminated string
    limit = b"[" * 32 + b"]" * 32
    assert parse_json(limit, 1000, max_depth=32) is not None  # the limit itself is allowed
    assert parse_json(b'["' + b"[" * 500 + b'"]', 1000, max_depth=2) == ["[" * 500]


def test_content_types():
    for ok in (None, "application/json", "Application/JSON; charset=UTF-8", "application/merge-patch+json"):
        check_content_type(ok)
    for bad in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        with pytest.raises(RequestError, match="content-type must be application/json") as exc:
            check_content_type(bad)
        assert exc.value.status == 415
    with pytest.raises(RequestError, match="must be UTF-8") as exc:
        check_content_type("application/json; charset=latin-1")
    assert exc.value.status == 415


def test_feedback_parsing():
    labels = ["negative", "positive"]
    one = parse_feedback({"request_id": "r1", "label": "positive"}, labels, 10)
    assert [(f.request_id, f.item, f.label) for f in one] == [("r1", 0, "positive")]
    many = parse_feedback([{"request_id": "r1", "item": 2, "label": "negative"}] * 3, labels, 10)
    assert len(many) == 3 and many[0].item == 2
    for payload, message in (
        ({"request_id": "r1", "label": "meh"}, "label must be one of"),
        ({"request_id": 5, "label": "positive"}, "request_id"),
        ({"request_id": "r1", "label": "positive", "item": -1}, "item"),
        ({"request_id": "r1", "label": "positive", "item": True}, "item"),
        ([], "no labels"),
    ):
        with pytest.raises(RequestError, match=message) as exc:
            parse_feedback(payload, labels, 10)
        assert exc.value.status == 422
    with pytest.raises(RequestError) as exc:
        parse_feedback([{"request_id": "r", "label": "positive"}] * 11, labels, 10)
    assert exc.value.status == 413


def test_serving_settings_are_checked():
    assert from_dict(Settings, {}, "serving") == Settings()
    with pytest.raises(ParamsError, match=r"^serving\.max_batch_texts: must be > 0"):
        from_dict(Settings, {"max_batch_texts": 0}, "serving")
    with pytest.raises(ParamsError, match=r"^serving\.micro_batch_wait_ms: must be >= 0"):
        from_dict(Settings, {"micro_batch_wait_ms": -1}, "serving")
    with pytest.raises(ParamsError, match=r"^serving\.port: unknown key"):
        from_dict(Settings, {"port": 80}, "serving")
    for depth in (1, 257):
        with pytest.raises(ParamsError, match=r"^serving\.max_json_depth: must be within \[2, 256\]"):
            from_dict(Settings, {"max_json_depth": depth}, "serving")
    with pytest.raises(ParamsError, match=r"^serving\.feedback_window_requests: must be > 0"):
        from_dict(Settings, {"feedback_window_requests": 0}, "serving")


def _shared(path: Path, capacity: int) -> SharedServedRequests:
    return SharedServedRequests(path / "served.sqlite", capacity)


@pytest.mark.parametrize(
    "make", [lambda path, capacity: ServedRequests(capacity), _shared], ids=["in-memory", "shared"]
)
def test_served_requests_check_labels_and_stay_bounded(make, tmp_path):
    served = make(tmp_path, 3)
    written: list[list[Feedback]] = []
    for i in range(3):
        served.add(f"r{i}", texts=2)
    assert served.accept([Feedback("r0", 1, "positive")], written.append) == 0
    assert served.label("r0", 1) == "positive" and served.label("r0", 0) is None
    # A repeat is accepted and not written again; a different label for the same text is refused.
    assert served.accept([Feedback("r0", 1, "positive"), Feedback("r1", 0, "negative")], written.append) == 1
    assert [[(f.request_id, f.item) for f in batch] for batch in written] == [[("r0", 1)], [("r1", 0)]]
    with pytest.raises(ConflictingLabel, match="'r0' item 1 is labelled 'positive' already, not 'negative'"):
        served.accept([Feedback("r2", 0, "positive"), Feedback("r0", 1, "negative")], written.append)
    with pytest.raises(ConflictingLabel):  # two different labels in one batch
        served.accept([Feedback("r2", 0, "positive"), Feedback("r2", 0, "negative")], written.append)
    with pytest.raises(UnknownRequest, match="no item 2"):
        served.accept([Feedback("r2", 2, "positive")], written.append)
    with pytest.raises(UnknownRequest, match="unknown request id 'nope'"):
        served.accept([Feedback("r2", 0, "positive"), Feedback("nope", 0, "positive")], written.append)
    assert len(written) == 2 and served.label("r2", 0) is None  # a refused batch leaves no trace

    def failing(batch):
        raise OSError("log closed")

    with pytest.raises(OSError):
        served.accept([Feedback("r2", 0, "positive")], failing)
    assert served.label("r2", 0) is None  # not remembered: the client's retry is written
    assert served.accept([Feedback("r2", 0, "positive")], written.append) == 0

    served.add("r3", texts=1)  # over the bound: the oldest id goes, with its labels
    assert len(served) == 3 and "r0" not in served and served.forgotten == 1
    assert all(f"r{i}" in served for i in (1, 2, 3))  # every id within the bound is still held
    with pytest.raises(UnknownRequest, match="or older"):
        served.accept([Feedback("r0", 1, "positive")], written.append)
    served.add("r1", texts=1)  # a reused id is its newest use and keeps its text count and labels
    served.add("r4", texts=1)
    assert "r2" not in served and served.label("r1", 0) == "negative"


@pytest.mark.parametrize(
    "make", [lambda path, capacity: ServedRequests(capacity), _shared], ids=["in-memory", "shared"]
)
def test_adding_many_at_once_is_adding_them_in_turn(make, tmp_path):
    batch = [("a", 1), ("b", 2), ("a", 3), ("c", 1), ("d", 1)]  # a reused id, one over the bound
    (tmp_path / "one").mkdir()
    (tmp_path / "each").mkdir()
    together, in_turn = make(tmp_path / "one", 3), make(tmp_path / "each", 3)
    together.add_many(batch)
    for request_id, texts in batch:
        in_turn.add(request_id, texts)
    for served in (together, in_turn):
        assert len(served) == 3 and served.forgotten == 1
        assert [r for r in "abcd" if r in served] == ["a", "c", "d"]  # "b" is the oldest use
        with pytest.raises(UnknownRequest, match="no item 3"):
            served.accept([Feedback("a", 3, "positive")], lambda new: None)  # "a" had 3 texts
        served.accept([Feedback("a", 2, "positive")], lambda new: None)


def test_shared_served_requests_are_one_store_for_every_worker(tmp_path):
    # Two handles on one file, as two worker processes of one server open it.
    first, second = _shared(tmp_path, 3), _shared(tmp_path, 3)
    written: list[list[Feedback]] = []
    first.add("a", texts=2)
    second.add("b", texts=1)
    assert "a" in second and "b" in first and len(first) == len(second) == 2
    assert second.accept([Feedback("a", 1, "positive")], written.append) == 0  # answered by the first
    assert first.label("a", 1) == "positive"
    assert first.accept([Feedback("a", 1, "positive")], written.append) == 1  # a repeat, not written
    with pytest.raises(ConflictingLabel, match="already"):
        first.accept([Feedback("a", 1, "negative")], written.append)
    for request_id in ("c", "d"):  # the bound holds across the workers: "a" goes first
        second.add(request_id, texts=1)
    assert "a" not in first and len(first) == 3 and first.label("a", 1) is None
    assert [[(f.request_id, f.item) for f in batch] for batch in written] == [[("a", 1)]]
    first.close()
    second.close()


# --- model version, batcher, log ----------------------------------------------------------------


def test_model_version_is_a_content_hash(tmp_path):
    for name in MODEL_FILES:
        (tmp_path / "a" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "a" / name).write_text(json.dumps({"content of": name}))  # classifier.json is read
    version = model_version(tmp_path / "a")
    assert len(version) == 12 and version == model_version(tmp_path / "a")
    (tmp_path / "a").rename(tmp_path / "b")  # the folder's name does not matter
    assert model_version(tmp_path / "b") == version
    (tmp_path / "b" / "model.safetensors").write_text("retrained")
    assert model_version(tmp_path / "b") != version
    (tmp_path / "b" / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        model_version(tmp_path / "b")


def test_micro_batcher_groups_concurrent_requests_and_keeps_order():
    batches: list[list[str]] = []

    def predict(texts):
        batches.append(list(texts))
        return Predictions([f"label-{t}" for t in texts], [0.5] * len(texts), [len(t) for t in texts])

    async def scenario():
        batcher = MicroBatcher(predict, max_texts=8, wait_s=0.01)
        batcher.start()
        requests = [[f"r{i}a", f"r{i}b"] if i % 2 else [f"r{i}"] for i in range(6)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.close()
        return requests, results

    requests, results = asyncio.run(scenario())
    for texts, result in zip(requests, results, strict=True):
        assert result.predictions.labels == [f"label-{t}" for t in texts]  # each gets its own slice
        assert result.predictions.tokens == [len(t) for t in texts]
    assert len(batches) < len(requests)  # concurrent requests shared forward passes
    assert sorted(t for b in batches for t in b) == sorted(t for r in requests for t in r)
    assert all(len(b) <= 8 + 1 for b in batches)


def test_micro_batcher_passes_model_errors_to_every_request_of_the_batch():
    def broken(texts):
        raise RuntimeError("model exploded")

    async def scenario():
        batcher = MicroBatcher(broken, max_texts=8, wait_s=0.01)
        batcher.start()
        results = await asyncio.gather(batcher.submit(["a"]), batcher.submit(["b"]), return_exceptions=True)
        await batcher.close()
        return results

    assert [str(r) for r in asyncio.run(scenario())] == ["model exploded", "model exploded"]


def _row(i: int, ts: datetime) -> dict:
    return {
        "request_id": f"r{i}",
        "item": 0,
        "ts": ts,
        "text": f"text {i}",
        "prediction": "positive",
        "score": 0.9,
        "latency_ms": 3.0,
        "compute_ms": 1.0,
        "tokens": 4,
        "model_version": "v1",
    }


def test_prediction_log_partitions_by_date_and_keeps_rows_on_failure(tmp_path, monkeypatch):
    log = ParquetLog(str(tmp_path / "log"), PREDICTIONS, flush_rows=1000, background=False)
    late = datetime(2026, 5, 1, 23, 59, 59, 999000, tzinfo=UTC)
    log.append(_row(i, late + timedelta(milliseconds=i)) for i in range(4))  # 1 row on May 1, 3 on May 2
    assert log.pending == 4 and not (tmp_path / "log").exists()  # buffered, not yet written

    calls = []
    real_write = log._write

    def failing_write(date, rows):
        calls.append(date)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(date, rows)

    monkeypatch.setattr(log, "_write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        log.flush()
    assert log.pending == 3  # May 1 was written; May 2's rows stay buffered for the next try
    assert log.flush() == 3 and log.pending == 0
    days = sorted(p.name for p in (tmp_path / "log" / PREDICTIONS).iterdir())
    assert days == ["date=2026-05-01", "date=2026-05-02"]
    table = pq.read_table(tmp_path / "log" / PREDICTIONS / "date=2026-05-02")
    assert sorted(table.column("request_id").to_pylist()) == ["r1", "r2", "r3"]
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.append([_row(9, late)])


def test_prediction_log_background_flush_writes_when_full(tmp_path):
    log = PredictionLog(str(tmp_path / "log"), flush_rows=5, flush_seconds=60.0)
    log.predictions.append(_row(i, datetime(2026, 5, 1, tzinfo=UTC)) for i in range(5))
    for _ in range(200):  # the flusher thread was woken by the full buffer
        if log.predictions.rows_written == 5:
            break
        asyncio.run(asyncio.sleep(0.01))
    assert log.predictions.rows_written == 5
    log.predictions.append([_row(7, datetime(2026, 5, 1, tzinfo=UTC))])
    log.close()  # the last row is written on close, long before flush_seconds
    assert log.predictions.rows_written == 6


# --- the app on the real classifier -------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ServedModel:
    return load_model(shared_model_dir(tmp_path_factory), batch_size=16)


def _client(model, log_uri: str, params: Settings = PARAMS, clock=None):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    log = PredictionLog(
        log_uri,
        flush_rows=10_000,
        flush_seconds=60.0,
        feedback_window_requests=params.feedback_window_requests,
    )
    kwargs = {"clock": clock} if clock is not None else {}
    return TestClient(create_app(model, params, log, **kwargs), raise_server_exceptions=False)


def test_predict_answers_and_logs_every_request(model, tmp_path):
    log_uri = str(tmp_path / "log")
    with _client(model, log_uri) as client:
        single = client.post("/predict", json={"text": "a wonderful film"}, headers={"X-Request-ID": "req-1"})
        batch = client.post("/predict", json={"texts": ["bad plot", "great music", "dull story"]})
        others = [client.post("/predict", json={"text": f"the film {i} was good"}) for i in range(6)]
    # Leaving the client ran the shutdown: every buffered row is on disk now.
    assert single.status_code == 200
    body = single.json()
    assert body["request_id"] == "req-1" == single.headers["x-request-id"]
    assert body["model_version"] == model.version == single.headers["x-model-version"]
    assert body["label"] in model.labels and 0.5 <= body["score"] <= 1.0
    predictions = batch.json()["predictions"]
    assert len(predictions) == 3 and all(p["label"] in model.labels for p in predictions)
    assert all(r.status_code == 200 for r in others)

    frame = read_window(log_uri, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)).frame
    assert len(frame) == 1 + 3 + 6  # one row per text
    assert frame["request_id"].nunique() == 1 + 1 + 6  # one id per request
    row = frame[frame["request_id"] == "req-1"].iloc[0]
    assert (row["text"], row["prediction"], row["model_version"]) == (
        "a wonderful film",
        body["label"],
        model.version,
    )
    assert row["score"] == pytest.approx(body["score"])
    assert row["latency_ms"] > 0 and row["compute_ms"] > 0 and row["tokens"] >= 2
    batch_rows = frame[frame["request_id"] == batch.json()["request_id"]].sort_values("item")
    assert batch_rows["item"].tolist() == [0, 1, 2]
    assert batch_rows["text"].tolist() == ["bad plot", "great music", "dull story"]
    assert batch_rows["prediction"].tolist() == [p["label"] for p in predictions]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"text": ""}', 422),
        (b'{"text": 7}', 422),
        (b'{"texts": ["a", "b", "c", "d", "e"]}', 413),
        (json.dumps({"text": "y" * 51}).encode(), 413),
        (b'{"text": "\\ud800"}', 422),
        (b"not json", 400),
        (b"[1, 2]", 422),
        (b'{"text": "a"}' + b" " * 3000, 413),
    ],
)
def test_bad_requests_get_4xx_never_500_and_are_not_logged(model, tmp_path, body, status):
    log_uri = str(tmp_path / "log")
    with _client(model, log_uri) as client:
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        metrics = client.get("/metrics").text
    assert response.status_code == status
    assert response.json()["error"] and response.json()["model_version"] == model.version
    assert response.headers["x-model-version"] == model.version
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert f'serving_errors_total{{endpoint="/predict",status="{status}"}} 1.0' in metrics
    assert not (tmp_path / "log" / PREDICTIONS).exists()  # nothing to log


def test_every_response_names_the_model_version(model, tmp_path):
    with _client(model, str(tmp_path / "log")) as client:
        responses = {
            "healthz": client.get("/healthz"),
            "metrics": client.get("/metrics"),
            "unknown path": client.get("/nope"),
            "wrong method": client.get("/predict"),
            "bad request id": client.post("/predict", json={"text": "a"}, headers={"X-Request-ID": "bad id"}),
        }
    for name, response in responses.items():
        assert response.headers["x-model-version"] == model.version, name
        assert len(response.headers["x-request-id"]) == 32, name  # one the server made
        if name not in ("healthz", "metrics"):
            assert response.json()["request_id"] == response.headers["x-request-id"], name
    assert responses["healthz"].json() == {
        "status": "ok",
        "model_version": model.version,
        "labels": model.labels,
        "generator_version": None,  # no --generator
        "worker": 0,  # the only worker (serving.workers 1) ...
        "pid": os.getpid(),  # ... is the process that made the app
    }
    assert {r.headers["x-server-worker"] for r in responses.values()} == {"0"}
    assert responses["unknown path"].status_code == 404
    assert responses["wrong method"].status_code == 405
    assert responses["bad request id"].status_code == 422
    assert responses["wrong method"].json()["model_version"] == model.version


def test_labels_are_attached_by_request_id(model, tmp_path):
    log_uri = str(tmp_path / "log")
    with _client(model, log_uri) as client:
        ids = [
            client.post("/predict", json={"text": f"review number {i}"}).json()["request_id"]
            for i in range(4)
        ]
        pair = client.post("/predict", json={"texts": ["first", "second"]}).json()["request_id"]
        assert client.post("/feedback", json={"request_id": ids[0], "label": "negative"}).status_code == 202
        accepted = client.post(
            "/feedback",
            json=[
                {"request_id": ids[1], "label": "negative"},
                {"request_id": pair, "item": 1, "label": "positive"},
            ],
        )
        bad = client.post("/feedback", json={"request_id": ids[2], "label": "neutral"})
    assert accepted.status_code == 202 and accepted.json()["accepted"] == 2
    assert accepted.json()["request_id"] == accepted.headers["x-request-id"]
    assert bad.status_code == 422 and bad.json()["model_version"] == model.version
    everything = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    frame = attach_labels(
        read_window(log_uri, *everything).frame, read_window(log_uri, *everything, kind=LABELS).frame
    )
    labels = {(r.request_id, r.item): r.label for r in frame.itertuples()}
    assert labels[(ids[0], 0)] == "negative" and labels[(ids[1], 0)] == "negative"
    assert labels[(ids[2], 0)] is None and labels[(ids[3], 0)] is None
    assert labels[(pair, 0)] is None and labels[(pair, 1)] == "positive"
    assert len(frame) == 6


def _labels_written(log_uri: str) -> list[tuple[str, int, str]]:
    frame = read_window(
        log_uri, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC), kind=LABELS
    ).frame
    return sorted(zip(frame["request_id"], frame["item"], frame["label"], strict=True))


def test_feedback_refuses_unknown_ids_and_conflicts_and_writes_a_repeat_once(model, tmp_path, caplog):
    log_uri = str(tmp_path / "log")
    caplog.set_level(logging.INFO, logger="serving")
    with _client(model, log_uri) as client:
        one = client.post("/predict", json={"text": "a fine film"}).json()["request_id"]
        pair = client.post("/predict", json={"texts": ["first", "second"]}).json()["request_id"]

        def send(payload):
            return client.post("/feedback", json=payload)

        first = send({"request_id": one, "label": "positive"})
        repeat = send({"request_id": one, "label": "positive"})
        conflict = send({"request_id": one, "label": "negative"})
        unknown = send({"request_id": "never-served", "label": "negative"})
        no_item = send({"request_id": pair, "item": 2, "label": "negative"})
        # One bad label refuses the whole batch: the good one in it is not written either.
        mixed = send(
            [
                {"request_id": pair, "item": 0, "label": "negative"},
                {"request_id": "nope", "label": "positive"},
            ]
        )
        torn = send(
            [
                {"request_id": pair, "item": 1, "label": "negative"},
                {"request_id": pair, "item": 1, "label": "positive"},
            ]
        )
        batch = send(
            [{"request_id": pair, "item": 1, "label": "negative"}, {"request_id": one, "label": "positive"}]
        )
    assert (first.status_code, first.json()["accepted"], first.json()["repeats"]) == (202, 1, 0)
    assert (repeat.status_code, repeat.json()["accepted"], repeat.json()["repeats"]) == (202, 1, 1)
    assert (batch.status_code, batch.json()["accepted"], batch.json()["repeats"]) == (202, 2, 1)
    assert (
        conflict.status_code == 409
        and "labelled 'positive' already, not 'negative'" in conflict.json()["error"]
    )
    assert torn.status_code == 409 and "labelled 'negative' earlier in this batch" in torn.json()["error"]
    assert unknown.status_code == 404 and "unknown request id 'never-served'" in unknown.json()["error"]
    assert no_item.status_code == 404 and "had 2 text(s); there is no item 2" in no_item.json()["error"]
    assert mixed.status_code == 404
    for refused in (conflict, torn, unknown, no_item, mixed):
        body = refused.json()
        assert (
            body["request_id"] == refused.headers["x-request-id"] and body["model_version"] == model.version
        )
        lines = [r for r in caplog.records if body["request_id"] in r.getMessage()]
        assert len(lines) == 1 and lines[0].exc_info is None  # one line, no traceback
        assert f"-> {refused.status_code}" in lines[0].getMessage()
    assert _labels_written(log_uri) == sorted([(one, 0, "positive"), (pair, 1, "negative")])  # each once


def test_feedback_knows_every_id_within_the_window_and_refuses_older_ones(model, tmp_path):
    log_uri = str(tmp_path / "log")
    with _client(model, log_uri, Settings(feedback_window_requests=3)) as client:
        ids = [client.post("/predict", json={"text": f"review {i}"}).json()["request_id"] for i in range(5)]
        answers = [client.post("/feedback", json={"request_id": i, "label": "positive"}) for i in ids]
    assert [a.status_code for a in answers] == [404, 404, 202, 202, 202]  # the newest 3 are held
    assert "or older" in answers[0].json()["error"]


def test_a_bad_client_request_id_is_refused_under_a_new_id(model, tmp_path):
    with _client(model, str(tmp_path / "log")) as client:
        given = client.post("/predict", json={"text": "a"}, headers={"X-Request-ID": "bad id!"})
        good = client.post("/predict", json={"text": "a"}, headers={"X-Request-ID": "client-7"})
        feedback = client.post(
            "/feedback",
            json={"request_id": "client-7", "label": "negative"},
            headers={"X-Request-ID": "x" * 129},
        )
    assert given.status_code == 422 and "X-Request-ID: a request id must be 1-128" in given.json()["error"]
    assert given.json()["request_id"] == given.headers["x-request-id"] != "bad id!"
    assert good.json()["request_id"] == good.headers["x-request-id"] == "client-7"
    assert feedback.status_code == 422 and feedback.headers["x-request-id"] != "x" * 129


HOSTILE = [
    # (name, body, content type, status, words of the message)
    ("deep arrays", b"[" * 400_000 + b"]" * 400_000, "application/json", 400, "nests 400000 levels deep"),
    ("deep objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json", 400, "levels deep"),
    ("deep in texts", b'{"texts": [' + b"[" * 100 + b"]" * 100 + b"]}", "application/json", 400, "nests 102"),
    ("5000-digit int", b'{"text": ' + b"7" * 5000 + b"}", "application/json", 400, "number of 5000"),
    ("huge float", b'{"text": 1e999999}', "application/json", 422, "text must be a string, got float"),
    ("invalid utf-8", b'{"text": "\xff\xfe bad"}', "application/json", 400, "not valid UTF-8"),
    ("bom", b'\xef\xbb\xbf{"text": "hi"}', "application/json", 400, "byte order mark"),
    ("utf-16", '{"text": "hi"}'.encode("utf-16"), "application/json", 400, "not valid UTF-8"),
    ("lone surrogate", b'{"text": "\\udc80 x"}', "application/json", 422, "text is not valid Unicode"),
    ("NUL text", b'{"text": "\\u0000\\u0000\\u0000"}', "application/json", 422, "text has nothing visible"),
    (
        "control text",
        b'{"texts": ["ok", "\\u0001\\u001b\\u007f"]}',
        "application/json",
        422,
        "texts[1] has nothing",
    ),
    ("blank text", b'{"text": " \\t\\n "}', "application/json", 422, "text is empty"),
    ("NUL inside", b'{"text": "good\\u0000film"}', "application/json", 422, "text contains a NUL"),
    ("NaN", b'{"text": NaN}', "application/json", 400, "NaN is not a JSON value"),
    ("duplicate key", b'{"text": "a", "text": "b"}', "application/json", 400, "twice"),
    ("wrong type", b'{"text": ["a"]}', "application/json", 422, "text must be a string, got list"),
    ("texts a dict", b'{"texts": {"a": 1}}', "application/json", 422, "texts must be a list"),
    ("huge array", b'{"texts": [' + b'"a",' * 100_000 + b'"a"]}', "application/json", 413, "100001 items"),
    ("too big", b'{"text": "' + b"a" * 1_000_001 + b'"}', "application/json", 413, "over the limit"),
    ("text/plain", b'{"text": "hi"}', "text/plain", 415, "content-type must be application/json"),
    ("form", b"text=hi", "application/x-www-form-urlencoded", 415, "content-type"),
    ("latin-1", b'{"text": "hi"}', "application/json; charset=iso-8859-1", 415, "must be UTF-8"),
]


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status", "message"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_hostile_bodies_get_a_4xx_a_message_and_a_request_id(
    model, tmp_path, caplog, name, body, content_type, status, message
):
    caplog.set_level(logging.INFO, logger="serving")
    with _client(model, str(tmp_path / "log"), Settings()) as client:
        response = client.post("/predict", content=body, headers={"content-type": content_type})
        after = client.post("/predict", json={"text": "still serving"})
    assert response.status_code == status, response.text[:300]
    error = response.json()
    assert message in error["error"] and len(error["error"]) < 300
    assert error["request_id"] == response.headers["x-request-id"] and error["model_version"] == model.version
    assert all(r.exc_info is None and r.levelno < logging.ERROR for r in caplog.records)
    [line] = [r.getMessage() for r in caplog.records if error["request_id"] in r.getMessage()]
    assert f"POST /predict -> {status}" in line and message in line
    assert after.status_code == 200


def _fuzz_case(rng: random.Random, limit: int, served: list[str]) -> tuple[str, bytes, str | None]:
    """One hostile request: (path, body, content type); bodies stay under ``limit`` bytes + a little.
    ``served``: request ids answered so far, for feedback that names a real id."""
    json_type = "application/json"
    text = rng.choice(["a fine film", "dull", "ü", "x" * 300])
    kind = rng.randrange(14)
    if kind == 0:  # deep nesting, balanced or not, bare or inside a valid field
        n = rng.choice([33, 100, 999, 1001, rng.randrange(34, limit // 2)])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"t":', b"}]")])
        inner = opener * (n // len(opener)) + (closer * (n // len(opener)) if rng.random() < 0.7 else b"")
        body = rng.choice([inner, b'{"texts": ' + inner + b"}", b'{"text": ' + inner + b"}"])
    elif kind == 1:  # huge or odd numbers
        number = rng.choice(
            [
                b"9" * rng.randrange(101, 20_000),
                b"-" + b"1" * 5000,
                b"1e" + b"9" * 400,
                b"0." + b"3" * 4000,
                b"1E400",
                b"-0",
            ]
        )
        body = (
            rng.choice(
                [b'{"text": %s}', b'{"texts": [%s]}', b'{"request_id": "r", "item": %s, "label": "positive"}']
            )
            % number
        )
    elif kind == 2:  # invalid UTF-8 inside a valid body, overlong forms, encoded surrogates, a BOM, UTF-16/32
        good = json.dumps({"text": text}).encode()
        bad = rng.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82"])
        at = rng.randrange(len(good))
        body = rng.choice(
            [
                good[:at] + bad + good[at:],
                b"\xef\xbb\xbf" + good,
                json.dumps({"text": text}).encode(rng.choice(["utf-16", "utf-32", "utf-16-be"])),
            ]
        )
    elif kind == 3:  # random bytes
        body = rng.randbytes(rng.choice([0, 1, 7, 100, 5000]))
    elif kind == 4:  # huge arrays
        n = rng.randrange(9, limit // 6)
        body = rng.choice(
            [
                b'{"texts": [' + b'"a",' * n + b'"a"]}',
                b'{"texts": [' + b"0," * n + b"0]}",
                b"[" + b'{"request_id": "r", "label": "negative"},' * (n // 40) + b"{}]",
            ]
        )
    elif kind == 5:  # wrong field types, shapes and keys
        value = rng.choice([None, True, 3, -1.5, [], {}, ["a", ["b"]], {"text": "a"}, "", [None]])
        field = rng.choice(["text", "texts", "request_id", "item", "label", "txt", "\ud800", "x" * 10_000])
        body = json.dumps(rng.choice([{field: value}, [value], value, {"text": text, field: value}])).encode()
    elif kind == 6:  # NUL, control-only and invisible texts
        junk = "".join(
            rng.choice(["\0", "\x01", "\x1b", "\x7f", "\u200b", "\ufeff", "\u2028", " ", "\t"])
            for _ in range(rng.randrange(1, 300))
        )
        body = json.dumps(
            rng.choice([{"text": junk}, {"texts": [text, junk]}, {"text": text + "\0"}])
        ).encode()
    elif kind == 7:  # wrong content types on an otherwise valid body
        return (
            rng.choice(["/predict", "/feedback"]),
            json.dumps({"text": text}).encode(),
            rng.choice(
                [
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "multipart/form-data; boundary=zz",
                    "application/xml",
                    "application/json; charset=latin-1",
                    "",
                    ";;;",
                    'application/json; charset="utf-16"',
                ]
            ),
        )
    elif kind == 8:  # valid JSON mutated: bytes flipped, then cut
        good = bytearray(json.dumps({"texts": [text, "another one"]}).encode())
        for _ in range(rng.randrange(1, 6)):
            good[rng.randrange(len(good))] = rng.randrange(256)
        body = bytes(good[: rng.randrange(1, len(good) + 1)])
    elif kind == 9:  # escapes: lone surrogates, NUL, non-JSON constants, duplicate keys
        body = rng.choice(
            [
                b'{"text": "\\ud800"}',
                b'{"text": "a\\udfff"}',
                b'{"texts": ["\\u0000"]}',
                b'{"text": Infinity}',
                b'{"text": "a", "text": "a"}',
                b'{"request_id": "\\ud800", "label": "positive"}',
                b'{"text": "\\x41"}',
                b'{"text": "unterminated',
            ]
        )
    elif kind == 10:  # over the body limit
        body = b'{"text": "' + b"z" * (limit + rng.randrange(1, 1000)) + b'"}'
    elif kind == 12:  # valid JSON, odd but real Unicode: the tokenizer and the model must cope
        ranges = [
            (0x20, 0x7E),
            (0xA0, 0x2FF),
            (0x300, 0x36F),
            (0x590, 0x6FF),
            (0x4E00, 0x4FFF),
            (0x1F300, 0x1F6FF),
        ]
        ranges += [(0xE000, 0xE0FF), (0xFFF0, 0xFFFF), (0x10FF00, 0x10FFFF), (0x1, 0x1F)]
        chars = [
            chr(rng.randrange(lo, hi + 1))
            for lo, hi in (rng.choice(ranges) for _ in range(rng.randrange(1, 250)))
        ]
        return (
            "/predict",
            json.dumps({"texts": ["".join(chars)]}, ensure_ascii=rng.random() < 0.5).encode(),
            json_type,
        )
    elif kind == 13 and served:  # feedback on a real id: new, repeated, conflicting, or an item it lacks
        payload = {
            "request_id": rng.choice(served),
            "item": rng.choice([0, 0, 1, 7]),
            "label": rng.choice(["positive", "negative"]),
        }
        return (
            "/feedback",
            json.dumps(
                rng.choice([payload, [payload, payload], [payload, {**payload, "label": "positive"}]])
            ).encode(),
            json_type,
        )
    else:  # feedback that names nothing served, or nonsense
        body = json.dumps(
            rng.choice(
                [
                    {"request_id": "never-served", "label": "positive"},
                    {"request_id": "r", "item": 10**30, "label": "negative"},
                    {"request_id": "r\n", "label": "negative"},
                    [{"request_id": "r", "label": "positive"}] * 100,
                    {"label": "positive"},
                ]
            )
        ).encode()
    path = "/feedback" if kind in (11, 13) or rng.random() < 0.25 else "/predict"
    return path, body, rng.choice([json_type, json_type, None])


@pytest.mark.timeout(300)  # a bound on a hung server, not a speed check
def test_fuzz_hostile_bodies_never_5xx_and_every_refusal_has_a_message_and_an_id(model, tmp_path, caplog):
    rng = random.Random(20260501)
    params = Settings(
        max_text_chars=200, max_batch_texts=8, max_body_bytes=100_000, feedback_window_requests=50
    )
    caplog.set_level(logging.INFO, logger="serving")
    statuses: dict[int, int] = {}
    served_ids: list[str] = []
    with _client(model, str(tmp_path / "log"), params) as client:
        for n in range(300):
            path, body, content_type = _fuzz_case(rng, params.max_body_bytes, served_ids)
            headers = {} if content_type is None else {"content-type": content_type}
            response = client.post(path, content=body, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if path == "/predict" and response.status_code == 200:
                served_ids.append(response.json()["request_id"])
            case = f"case {n}: {path} {content_type!r} {body[:120]!r}"
            assert response.status_code < 500, case + " -> " + response.text[:300]
            answer = response.json()
            assert answer["request_id"] == response.headers["x-request-id"], case
            assert answer["model_version"] == model.version == response.headers["x-model-version"], case
            if response.status_code >= 400:
                assert isinstance(answer["error"], str) and answer["error"], case
        served = client.post("/predict", json={"text": "a fine film after all that"})
        labelled = client.post(
            "/feedback", json={"request_id": served.json()["request_id"], "label": "positive"}
        )
    assert served.status_code == 200 and served.json()["label"] in model.labels
    assert labelled.status_code == 202
    # The generator reached every kind of answer (a change that makes it miss one fails here).
    assert {200, 202, 400, 404, 409, 413, 415, 422} <= set(statuses), statuses
    assert not [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]


def test_metrics_count_requests_predictions_and_latency(model, tmp_path):
    with _client(model, str(tmp_path / "log")) as client:
        for i in range(3):
            client.post("/predict", json={"text": f"good film {i}"})
        client.post("/predict", json={"texts": ["a", "b"]})
        client.post("/predict", json={"text": ""})
        text = client.get("/metrics").text
    assert 'serving_requests_total{endpoint="/predict",status="200"} 4.0' in text
    assert 'serving_requests_total{endpoint="/predict",status="422"} 1.0' in text
    assert 'serving_request_latency_seconds_count{endpoint="/predict"} 5.0' in text
    counted = sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("serving_predictions_total{")
    )
    assert counted == 5.0  # 3 single texts + a batch of 2
    assert f'serving_model_info{{version="{model.version}"}} 1.0' in text
    assert "serving_batch_texts_bucket" in text and "serving_compute_seconds_total" in text


def test_request_time_comes_from_the_clock_and_sets_the_partition(model, tmp_path):
    log_uri = str(tmp_path / "log")
    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()
    with _client(model, log_uri, clock=lambda: at) as client:
        client.post("/predict", json={"text": "on a fixed clock"})
    assert [p.name for p in Path(log_uri, PREDICTIONS).iterdir()] == ["date=2026-03-04"]
    frame = read_window(
        log_uri, datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC), datetime(2026, 3, 4, 5, 6, 8, tzinfo=UTC)
    ).frame
    assert len(frame) == 1


@pytest.fixture
def s3_lake(monkeypatch):
    """A bucket ``lake`` on a local S3 server (moto, loopback only), for the s3:// log path."""
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()  # an instance cached for another endpoint must not be reused
    boto3.client("s3").create_bucket(Bucket="lake")
    try:
        yield "s3://lake/prediction_log"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def test_prediction_log_on_s3_round_trips_a_window(s3_lake):
    log = PredictionLog(s3_lake, background=False)
    day = datetime(2026, 5, 1, 12, tzinfo=UTC)
    log.predictions.append(_row(i, day + timedelta(minutes=i)) for i in range(10))
    log.labels.append([{"request_id": "r3", "item": 0, "ts": day + timedelta(hours=1), "label": "negative"}])
    log.close()
    read = read_window(s3_lake, day + timedelta(minutes=2), day + timedelta(minutes=5))
    assert read.frame["request_id"].tolist() == ["r2", "r3", "r4"]
    assert all(f.startswith("lake/prediction_log/predictions/date=2026-05-01/part-") for f in read.files)
    labels = read_window(s3_lake, day, day + timedelta(hours=2), kind=LABELS).frame
    assert attach_labels(read.frame, labels)["label"].tolist() == [None, "negative", None]


class _SlowModel:
    """The real tiny classifier with a fixed delay per forward pass: a server past its capacity."""

    def __init__(self, model: ServedModel, seconds: float):
        self._model, self.seconds, self.texts_seen = model, seconds, 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def predict(self, texts):
        time.sleep(self.seconds)
        self.texts_seen += len(texts)
        return self._model.predict(texts)


def _metric(text: str, name: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(name)).split()[-1])


def test_past_capacity_requests_get_503_with_retry_after_and_the_admitted_ones_are_served_once(
    model, tmp_path
):
    params = Settings(**{**PARAMS.__dict__, "max_queued_texts": 8, "micro_batch_texts": 4})
    slow = _SlowModel(model, 0.02)
    log_uri = str(tmp_path / "log")
    with _client(slow, log_uri, params) as client:

        def call(i: int):
            return client.post("/predict", json={"text": f"a fine film, take {i}"})

        with ThreadPoolExecutor(64) as pool:  # 512 clients, 64 at a time
            burst = list(pool.map(call, range(512)))
        after = client.post("/predict", json={"text": "back to normal"})
        metrics = client.get("/metrics").text
    ok = [r for r in burst if r.status_code == 200]
    shed = [r for r in burst if r.status_code == 503]
    assert len(ok) + len(shed) == len(burst) and ok and shed  # nothing else: no timeout, no 500
    for r in shed:
        assert int(r.headers["retry-after"]) >= 1
        assert (
            r.json()["error"].startswith("overloaded: ")
            and r.json()["request_id"] == r.headers["x-request-id"]
        )
    assert after.status_code == 200  # after the burst, back to normal
    # Refused requests never reached the model; admitted ones were each answered and logged once.
    assert slow.texts_seen == len(ok) + 1
    served = {r.json()["request_id"] for r in [*ok, after]}
    logged = pq.read_table(Path(log_uri, PREDICTIONS)).column("request_id").to_pylist()
    assert sorted(logged) == sorted(served) and not served & {r.json()["request_id"] for r in shed}
    # The queue stayed within its bound (memory bounded), and the refusals were counted.
    assert _metric(metrics, 'serving_queued_items_peak{endpoint="/predict"}') <= 8
    assert _metric(metrics, 'serving_queued_items{endpoint="/predict"}') == 0
    assert _metric(metrics, 'serving_requests_shed_total{endpoint="/predict"}') == len(shed)


def test_a_queue_bound_below_the_largest_request_is_refused():
    with pytest.raises(ValueError, match=r"serving.max_queued_texts: must be 0 or >= max_batch_texts \(64\)"):
        Settings(max_queued_texts=10)
    with pytest.raises(ValueError, match="serving.max_queued_prompts: must be 0 or >= max_generate_prompts"):
        Settings(max_queued_prompts=4)
    assert Settings(max_queued_texts=0).max_queued_texts == 0  # no bound


def test_every_worker_needs_a_thread_of_its_own():
    with pytest.raises(ParamsError, match=r"^serving\.cpu_threads: must be 0 or >= workers \(3\), got 2"):
        from_dict(Settings, {"workers": 3, "cpu_threads": 2}, "serving")
    with pytest.raises(ParamsError, match=r"^serving\.workers: must be > 0"):
        from_dict(Settings, {"workers": 0}, "serving")
    # cpu_threads is split between the workers (the first take the remainder); 0 splits the cores.
    assert [Settings(workers=2, cpu_threads=5).worker_threads(w, cores=8) for w in (0, 1)] == [3, 2]
    assert [Settings(workers=3, cpu_threads=0).worker_threads(w, cores=2) for w in (0, 1, 2)] == [1, 1, 1]
    assert Settings(workers=1, cpu_threads=0).worker_threads(0, cores=8) == 0  # torch's default
