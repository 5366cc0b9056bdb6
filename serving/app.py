"""The model server: a FastAPI app around one loaded model, its micro-batcher and its log.

Endpoints:

- ``POST /predict``: ``{"text": "..."}`` -> ``{"request_id", "model_version", "label", "score"}``;
  ``{"texts": [...]}`` -> ``{"request_id", "model_version", "predictions": [{"label", "score"}]}``.
  The request id is the client's ``X-Request-ID`` header when given, else a new one; it comes
  back in the body and the header, and keys the prediction-log rows (with ``item``, the text's
  position).
- ``POST /feedback``: late ground truth, ``{"request_id", "label"[, "item"]}`` or a list of them;
  written to the labels log, joined to predictions by the monitor (202).
- ``GET /healthz``: ``{"status": "ok", "model_version", "labels"}``.
- ``GET /metrics``: Prometheus text: requests by endpoint and status, latency histogram, errors,
  predictions by label, tokens, compute seconds, micro-batch sizes, log rows pending.

Every response, errors included, carries the model version (``X-Model-Version`` header, and
``model_version`` in JSON bodies). Client mistakes get a 4xx with a message (serving.validation);
a 500 means a bug. On shutdown (SIGTERM included: uvicorn drains in-flight requests first) the
batcher finishes its queue and the log writes every buffered row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException

from llm.served import ServedModel
from serving.batcher import MicroBatcher
from serving.prediction_log import PredictionLog, to_utc
from serving.settings import Settings
from serving.validation import RequestError, check_request_id, parse_feedback, parse_json, parse_predict

log = logging.getLogger("serving")

ENDPOINTS = ("/predict", "/feedback", "/healthz", "/metrics")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """The Prometheus metrics of one app, in their own registry (two apps never share counters)."""

    def __init__(self, version: str, pending_rows: Callable[[], float]):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "serving_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.errors = Counter(
            "serving_errors", "HTTP responses with status >= 400", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "serving_request_latency_seconds",
            "HTTP request latency in the server",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "serving_predictions", "Texts classified, by predicted label", ["label"], registry=r
        )
        self.tokens = Counter("serving_tokens", "Tokens read by the model", registry=r)
        self.compute = Counter("serving_compute_seconds", "Seconds spent in forward passes", registry=r)
        self.batch = Histogram(
            "serving_batch_texts",
            "Texts per forward pass (micro-batch size)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        Gauge("serving_model_info", "The served model (value 1)", ["version"], registry=r).labels(
            version
        ).set(1)
        Gauge("serving_log_pending_rows", "Prediction-log rows not yet on storage", registry=r).set_function(
            pending_rows
        )

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()

    def observe_batch(self, texts: int, seconds: float) -> None:
        self.batch.observe(texts)
        self.compute.inc(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Observability:
    """ASGI middleware: the model-version header on every response, and request metrics."""

    def __init__(self, app: Any, version: str, metrics: ServerMetrics):
        self.app = app
        self.version = version
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_version(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("x-model-version", self.version)
            await send(message)

        try:
            await self.app(scope, receive, send_with_version)
        finally:
            path = scope.get("path", "")
            self.metrics.observe_request(
                path if path in ENDPOINTS else "other", status, time.perf_counter() - started
            )


async def read_body(request: Any, max_bytes: int) -> bytes:
    """The request body, refusing (413) more than ``max_bytes`` before reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"request body is {declared} bytes, over the limit of {max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, f"request body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    model: ServedModel,
    params: Settings,
    prediction_log: PredictionLog,
    clock: Callable[[], float] = time.time,
):
    """The FastAPI app serving ``model``, logging to ``prediction_log`` (closed at shutdown).

    ``clock`` gives the request timestamps written to the log (epoch seconds).
    """
    version = model.version
    metrics = ServerMetrics(version, lambda: prediction_log.predictions.pending)
    batcher = MicroBatcher(
        model.predict,
        max_texts=params.micro_batch_texts,
        wait_s=params.micro_batch_wait_ms / 1000.0,
        on_batch=metrics.observe_batch,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        batcher.start()
        log.info("serving: model %s (%s) ready", version, ", ".join(model.labels))
        try:
            yield
        finally:
            await batcher.close()  # every queued request answered and logged ...
            await asyncio.to_thread(prediction_log.close)  # ... then every buffered row written
            log.info(
                "serving: stopped; prediction log %s has %d rows from this run",
                prediction_log.uri,
                prediction_log.predictions.rows_written,
            )

    app = FastAPI(title="llm-production-line model server", version=version, lifespan=lifespan)
    app.state.metrics = metrics
    app.state.model = model
    app.state.prediction_log = prediction_log
    app.add_middleware(Observability, version=version, metrics=metrics)

    def error(status: int, message: str, request_id: str | None = None) -> JSONResponse:
        body = {"error": message, "model_version": version}
        if request_id is not None:
            body["request_id"] = request_id
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, exc.message, getattr(request.state, "request_id", None))

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("serving: %s %s failed", request.method, request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        received = clock()
        started = time.perf_counter()
        request_id = check_request_id(request.headers.get("x-request-id")) or uuid.uuid4().hex
        request.state.request_id = request_id
        body = await read_body(request, params.max_body_bytes)
        parsed = parse_predict(parse_json(body, params.max_body_bytes), params)
        result = await batcher.submit(parsed.texts)
        latency_ms = (time.perf_counter() - started) * 1000.0
        out = result.predictions
        ts = to_utc(received)
        prediction_log.predictions.append(
            {
                "request_id": request_id,
                "item": i,
                "ts": ts,
                "text": text,
                "prediction": label,
                "score": score,
                "latency_ms": latency_ms,
                "compute_ms": result.compute_ms,
                "tokens": tokens,
                "model_version": version,
            }
            for i, (text, label, score, tokens) in enumerate(
                zip(parsed.texts, out.labels, out.scores, out.tokens, strict=True)
            )
        )
        for label in out.labels:
            metrics.predictions.labels(label).inc()
        metrics.tokens.inc(sum(out.tokens))
        body_out: dict[str, Any] = {"request_id": request_id, "model_version": version}
        if parsed.single:
            body_out.update(label=out.labels[0], score=out.scores[0])
        else:
            body_out["predictions"] = [
                {"label": lab, "score": s} for lab, s in zip(out.labels, out.scores, strict=True)
            ]
        return JSONResponse(body_out, headers={"x-request-id": request_id})

    @app.post("/feedback", status_code=202)
    async def feedback(request: Request) -> JSONResponse:
        received = to_utc(clock())
        body = await read_body(request, params.max_body_bytes)
        items = parse_feedback(parse_json(body, params.max_body_bytes), model.labels, params.max_batch_texts)
        prediction_log.labels.append(
            {"request_id": f.request_id, "item": f.item, "ts": received, "label": f.label} for f in items
        )
        return JSONResponse({"accepted": len(items), "model_version": version}, status_code=202)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "model_version": version, "labels": model.labels})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    return app
