"""serving: request validation (every client mistake is a 4xx, never a 500), the model version,
the micro-batcher, the Parquet prediction log, and the FastAPI app on the real (tiny) classifier:
every response names the model version, N requests give N log rows, labels are attached by
request id, /metrics counts what happened."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from components.common.params import ParamsError, from_dict
from llm.served import MODEL_FILES, Predictions, ServedModel, load_model, model_version
from monitoring.window import attach_labels, read_window
from serving.batcher import MicroBatcher
from serving.prediction_log import LABELS, PREDICTIONS, ParquetLog, PredictionLog
from serving.settings import Settings
from serving.validation import RequestError, check_request_id, parse_feedback, parse_json, parse_predict
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
    ],
)
def test_bad_predict_requests_are_4xx_with_a_message(payload, status, message):
    with pytest.raises(RequestError) as exc:
        parse_predict(payload, PARAMS)
    assert exc.value.status == status
    assert message in exc.value.message


def test_good_predict_requests():
    assert parse_predict({"text": "fine film"}, PARAMS).texts == ["fine film"]
    assert parse_predict({"text": "fine film"}, PARAMS).single
    batch = parse_predict({"texts": ["a", "b", "c", "d"]}, PARAMS)
    assert batch.texts == ["a", "b", "c", "d"] and not batch.single
    assert parse_predict({"text": "x" * 50}, PARAMS).texts == ["x" * 50]  # the limit itself is allowed


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


# --- model version, batcher, log ----------------------------------------------------------------


def test_model_version_is_a_content_hash(tmp_path):
    for name in MODEL_FILES:
        (tmp_path / "a" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "a" / name).write_text(f"content of {name}")
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

    log = PredictionLog(log_uri, flush_rows=10_000, flush_seconds=60.0)
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
    assert responses["healthz"].json() == {
        "status": "ok",
        "model_version": model.version,
        "labels": model.labels,
    }
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
        assert client.post("/feedback", json={"request_id": ids[0], "label": "positive"}).status_code == 202
        accepted = client.post(
            "/feedback",
            json=[
                {"request_id": ids[1], "label": "negative"},
                {"request_id": pair, "item": 1, "label": "positive"},
                {"request_id": ids[0], "label": "negative"},  # a correction: the latest label counts
                {"request_id": "never-served", "label": "negative"},
            ],
        )
        bad = client.post("/feedback", json={"request_id": ids[2], "label": "neutral"})
    assert accepted.status_code == 202 and accepted.json()["accepted"] == 4
    assert bad.status_code == 422 and bad.json()["model_version"] == model.version
    everything = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    frame = attach_labels(
        read_window(log_uri, *everything).frame, read_window(log_uri, *everything, kind=LABELS).frame
    )
    labels = {(r.request_id, r.item): r.label for r in frame.itertuples()}
    assert labels[(ids[0], 0)] == "negative" and labels[(ids[1], 0)] == "negative"
    assert labels[(ids[2], 0)] is None and labels[(ids[3], 0)] is None
    assert labels[(pair, 0)] is None and labels[(pair, 1)] == "positive"
    assert len(frame) == 6  # the label of a request never served adds no row


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
