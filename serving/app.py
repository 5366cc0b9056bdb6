"""The model server: a FastAPI app around one loaded model, its micro-batcher and its log.

Endpoints:

- ``POST /predict``: ``{"text": "..."}`` -> ``{"request_id", "model_version", "label", "score"}``;
  ``{"texts": [...]}`` -> ``{"request_id", "model_version", "predictions": [{"label", "score"}]}``.
  The request id keys the prediction-log rows (with ``item``, the text's position).
- ``POST /feedback``: late ground truth, ``{"request_id", "label"[, "item"]}`` or a list of them;
  written to the labels log, joined to predictions by the monitor (202, with ``accepted`` and
  ``repeats``: labels equal to one already given, not written again). An id this process did not
  answer among its newest ``serving.feedback_window_requests`` requests, or an item it did not
  have, is 404; a label contradicting the one given before is 409 (prediction_log.ServedRequests).
- ``POST /generate`` (when the server was given a generator, ``--generator DIR``; else 503):
  ``{"prompt": str}`` or ``{"prompts": [str, ...]}`` with optional decoding fields
  ``max_new_tokens``, ``temperature``, ``top_k``, ``top_p``, ``seed``, ``stop`` (the generator
  folder's defaults for the rest) -> ``{"request_id", "model_version", "generations": [{"text",
  "finish_reason", "tokens_in", "tokens_out"}], "latency_ms", "ttft_ms"}``; ``model_version`` is
  the generator's. Concurrent requests with the same decoding settings share one batched decode
  (serving.batcher.GenerationBatcher); one generations-log row per prompt. With ``"choices":
  [str, ...]`` instead of decoding fields, each prompt is answered with the choice the model finds
  most likely as its response (``finish_reason`` "choice"; ``Generator.choose``, e.g. a cloze
  question's candidate entities), scored on the decode thread between decodes.
- ``GET /healthz``: ``{"status": "ok", "model_version", "labels", "generator_version", "worker",
  "pid"}`` (the worker process that answered: its index among ``serving.workers``, its pid).
- ``GET /metrics``: Prometheus text: requests by endpoint and status, latency histogram, errors,
  predictions by label, tokens, compute seconds, micro-batch sizes, log rows pending; for
  generation: requests, prompts, generated tokens, decodes and their sizes, time to first token,
  seconds per generated token, and the last decode's generated tokens per second.

Every response, errors included, carries the worker that answered (``X-Server-Worker``: its
index, 0 with one worker), the model version (``X-Model-Version`` header, and
``model_version`` in JSON bodies) and a request id (``X-Request-ID`` header, and ``request_id`` in
JSON bodies): the client's ``X-Request-ID`` when it is valid, else one the server makes (a POST
with an invalid one is refused with 422, under the new id). Client mistakes get a 4xx with
``error`` (a message), whatever the body (serving.validation), and one log line with the request
id and the reason, no traceback; a 500 means a bug (logged with its traceback). On shutdown
(SIGTERM included: uvicorn drains in-flight requests first) the batcher finishes its queue and the
log writes every buffered row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from llm.served import ServedModel
from serving.batcher import GenerationBatcher, MicroBatcher, Overloaded
from serving.prediction_log import ConflictingLabel, PredictionLog, UnknownRequest, to_utc
from serving.settings import Settings
from serving.validation import (
    REQUEST_ID,
    REQUEST_ID_RULE,
    RequestError,
    check_content_type,
    parse_feedback,
    parse_generate,
    parse_json,
    parse_predict,
)

log = logging.getLogger("serving")

ENDPOINTS = ("/predict", "/generate", "/feedback", "/healthz", "/metrics")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
NO_GENERATOR = "no generator is loaded: start the server with --generator DIR to serve /generate"


class ServerMetrics:
    """The Prometheus metrics of one app, in their own registry (two apps never share counters).

    A server of several worker processes (``serving.workers``) runs prometheus_client's
    multiprocess mode: its parent sets ``PROMETHEUS_MULTIPROC_DIR`` before a worker imports
    prometheus_client, every worker's values live in files there, and whichever worker answers
    ``GET /metrics`` renders all of them: counters and histograms summed over the workers (those
    that died included, so a counter never goes back), ``serving_worker_info`` one series per live
    worker, the queue and log gauges summed over the live workers (peaks: the largest). Gauges
    read from live state are set by each worker when it answers a scrape and every
    ``REFRESH_S`` seconds, so another worker's may be that much old.
    """

    REFRESH_S = 1.0  # how often a worker of a multi-process server writes its live gauges (seconds)

    def __init__(self, version: str, pending_rows: Callable[[], float], worker: int = 0):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.shared_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self._live: list[tuple[Any, Callable[[], float]]] = []  # (gauge, its value) set by refresh()
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
        Gauge(
            "serving_model_info",
            "The served model (value 1)",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        ).labels(version).set(1)
        Gauge(
            "serving_worker_info",
            "The server's worker processes (value 1 per live worker)",
            ["worker", "pid"],
            registry=r,
            multiprocess_mode="livemax",
        ).labels(str(worker), str(os.getpid())).set(1)
        self.watch(
            Gauge(
                "serving_log_pending_rows",
                "Prediction-log rows not yet on storage",
                registry=r,
                multiprocess_mode="livesum",
            ),
            pending_rows,
        )
        self.shed = Counter(
            "serving_requests_shed",
            "Requests refused with 503 because the server's queue bound was reached",
            ["endpoint"],
            registry=r,
        )
        self.queued = Gauge(
            "serving_queued_items",
            "Texts (/predict) or prompts (/generate) admitted and not yet answered",
            ["endpoint"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queued_peak = Gauge(
            "serving_queued_items_peak",
            "Most texts or prompts admitted and not yet answered at once in one worker since it started",
            ["endpoint"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.generation_requests = Counter(
            "serving_generation_requests", "POST /generate requests answered", registry=r
        )
        self.generation_prompts = Counter("serving_generation_prompts", "Prompts generated for", registry=r)
        self.generated_tokens = Counter(
            "serving_generated_tokens", "Tokens generated (end tokens included: each cost a step)", registry=r
        )
        self.prompt_tokens = Counter("serving_generation_prompt_tokens", "Prompt tokens read", registry=r)
        self.generate_calls = Counter("serving_generate_calls", "Batched decodes run", registry=r)
        self.generate_seconds = Counter(
            "serving_generate_compute_seconds", "Seconds spent in batched decodes", registry=r
        )
        self.generate_batch = Histogram(
            "serving_generate_batch_prompts", "Prompts per batched decode", buckets=BATCH_BUCKETS, registry=r
        )
        self.ttft = Histogram(
            "serving_time_to_first_token_seconds",
            "Request received -> first generated token (queue wait + prefill)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.token_seconds = Histogram(
            "serving_seconds_per_generated_token",
            "Mean decoding step after the first token, per batched decode",
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.tokens_per_s = Gauge(
            "serving_generated_tokens_per_second",
            "Generated tokens per second of the last decode",
            registry=r,
            multiprocess_mode="livemostrecent",
        )

    def watch(self, gauge: Any, value: Callable[[], float]) -> None:
        """``gauge`` shows ``value()``: read at each scrape (one process), or written by
        ``refresh`` (several: another process renders this one's value from its file)."""
        if self.shared_dir:
            self._live.append((gauge, value))
        else:
            gauge.set_function(value)

    def refresh(self) -> None:
        """Write this worker's live gauges (a no-op in a one-process server)."""
        for gauge, value in self._live:
            gauge.set(value())

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()

    def observe_batch(self, texts: int, seconds: float) -> None:
        self.batch.observe(texts)
        self.compute.inc(seconds)

    def observe_decode(self, prompts: int, result: Any) -> None:
        """After each batched decode (``result``: llm.gpt.generate.GenerateResult)."""
        self.generate_calls.inc()
        self.generate_batch.observe(prompts)
        self.generate_seconds.inc(result.seconds)
        self.generated_tokens.inc(result.new_tokens)
        self.tokens_per_s.set(result.tokens_per_s)
        if result.steps > 1:
            self.token_seconds.observe(result.per_token_latency_s)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if not self.shared_dir:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        self.refresh()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.shared_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class AddedTogether:
    """``await add(request_id, texts)``: the ids of the requests answered in one event-loop turn
    (a micro-batch's requests are answered together) go to ``store.add_many`` in one call, made
    before any of them is answered, so /feedback finds each id as soon as its response is sent.
    For the workers' shared store that is one SQLite transaction per micro-batch instead of one per
    request (about 0.2 ms of CPU saved per request, measured here)."""

    def __init__(self, store: Any):
        self.store = store
        self._pending: list[tuple[str, int]] = []
        self._waiters: list[asyncio.Future] = []

    async def add(self, request_id: str, texts: int) -> None:
        loop = asyncio.get_running_loop()
        if not self._pending:  # runs after the handlers woken in this turn have queued theirs
            loop.call_soon(self._flush)
        waiter = loop.create_future()
        self._pending.append((request_id, texts))
        self._waiters.append(waiter)
        await waiter

    def _flush(self) -> None:
        requests, waiters = self._pending, self._waiters
        self._pending, self._waiters = [], []
        try:
            self.store.add_many(requests)
        except Exception as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in waiters:
            if not waiter.done():  # the client may have gone away
                waiter.set_result(None)


async def _refresh(metrics: ServerMetrics) -> None:
    while True:
        metrics.refresh()
        await asyncio.sleep(metrics.REFRESH_S)


def _request_id(scope: dict) -> tuple[str, bool]:
    """The client's ``X-Request-ID`` if valid, else a new id; and whether the client sent a bad one."""
    given = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), None)
    if given is not None:
        value = given.decode("latin-1")
        if REQUEST_ID.fullmatch(value):
            return value, False
    return uuid.uuid4().hex, given is not None


class Observability:
    """ASGI middleware: a request id for every request (``request.state.request_id``; the
    ``X-Request-ID`` header of every response), the model-version and worker headers, and
    request metrics."""

    def __init__(self, app: Any, version: str, metrics: ServerMetrics, worker: int = 0):
        self.app = app
        self.version = version
        self.metrics = metrics
        self.worker = str(worker)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id, bad_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"], state["bad_request_id"] = request_id, bad_id

        async def send_with_version(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.setdefault("x-model-version", self.version)
                headers.setdefault("x-request-id", request_id)
                headers.setdefault("x-server-worker", self.worker)
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
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > max_bytes):
        shown = declared if len(declared) <= 18 else f"{len(declared)}-digit"
        raise RequestError(413, f"request body is {shown} bytes, over the limit of {max_bytes}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise RequestError(413, f"request body is over the limit of {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError(400, f"client disconnected after {size} bytes of the body") from None
    return b"".join(chunks)


def create_app(
    model: ServedModel,
    params: Settings,
    prediction_log: PredictionLog,
    clock: Callable[[], float] = time.time,
    generator: Any = None,
    worker: int = 0,
):
    """The FastAPI app serving ``model`` (and ``generator``, an ``llm.generator.Generator``, on
    /generate when given), logging to ``prediction_log`` (closed at shutdown).

    ``clock`` gives the request timestamps written to the log (epoch seconds). ``worker``: this
    process's index among the server's workers (0 when it is the only one), in every response's
    ``X-Server-Worker`` header, /healthz and /metrics. ``app.state.drained`` turns True once the
    shutdown has answered every queued request and written every buffered row.
    """
    version = model.version
    generator_version = generator.version if generator is not None else None
    metrics = ServerMetrics(
        version, lambda: prediction_log.predictions.pending + prediction_log.generations.pending, worker
    )
    generation_batcher = None
    if generator is not None:
        generation_batcher = GenerationBatcher(
            lambda prompts, gen_params, seeds=None: generator.generate(prompts, gen_params, seeds=seeds),
            max_prompts=params.generate_batch_prompts,
            wait_s=params.generate_batch_wait_ms / 1000.0,
            on_batch=metrics.observe_decode,
            max_queued=params.max_queued_prompts,
        )
    batcher = MicroBatcher(
        model.predict,
        max_texts=params.micro_batch_texts,
        wait_s=params.micro_batch_wait_ms / 1000.0,
        max_queued=params.max_queued_texts,
        on_batch=metrics.observe_batch,
    )
    served_together = AddedTogether(prediction_log.served)
    for endpoint, which in (("/predict", batcher), ("/generate", generation_batcher)):
        if which is not None:
            metrics.watch(metrics.queued.labels(endpoint=endpoint), lambda w=which: w.admission.pending)
            metrics.watch(metrics.queued_peak.labels(endpoint=endpoint), lambda w=which: w.admission.peak)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        batcher.start()
        if generation_batcher is not None:
            generation_batcher.start()
            log.info("serving: generator %s (%s) ready", generator_version, generator.quantization)
        log.info("serving: model %s (%s) ready", version, ", ".join(model.labels))
        refresher = None
        if metrics.shared_dir:  # several workers: keep this one's live gauges fresh for the others
            refresher = asyncio.get_running_loop().create_task(_refresh(metrics), name="metrics-refresh")
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
            await batcher.close()  # every queued request answered and logged ...
            if generation_batcher is not None:
                await generation_batcher.close()
            await asyncio.to_thread(prediction_log.close)  # ... then every buffered row written
            app.state.drained = True
            log.info(
                "serving: stopped; prediction log %s has %d rows from this run",
                prediction_log.uri,
                prediction_log.predictions.rows_written,
            )

    app = FastAPI(title="llm-production-line model server", version=version, lifespan=lifespan)
    app.state.metrics = metrics
    app.state.model = model
    app.state.prediction_log = prediction_log
    app.state.generator = generator
    app.state.generation_batcher = generation_batcher
    app.state.drained = False
    app.add_middleware(Observability, version=version, metrics=metrics, worker=worker)

    def error(request: Request, status: int, message: str) -> JSONResponse:
        # The headers are set here too: a 500 is answered outside the Observability middleware.
        request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")  # never a lone surrogate
        shown = generator_version if request.url.path == "/generate" and generator_version else version
        return JSONResponse(
            {"error": message, "request_id": request_id, "model_version": shown},
            status_code=status,
            headers={"x-request-id": request_id, "x-model-version": shown, "x-server-worker": str(worker)},
        )

    def client_error(request: Request, status: int, message: str) -> JSONResponse:
        response = error(request, status, message)
        # One line per refused request, no traceback: a client's mistake is not the server's.
        log.info(
            "serving: %s %s -> %d (request %s): %s",
            request.method,
            request.url.path,
            status,
            response.headers["x-request-id"],
            message,
        )
        return response

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, exc: RequestError) -> JSONResponse:
        return client_error(request, exc.status, exc.message)

    @app.exception_handler(Overloaded)
    async def on_overload(request: Request, exc: Overloaded) -> JSONResponse:
        # Refused before any work: not logged as a prediction, counted, and no log line per request
        # (a burst would flood the log); the client is told when to come back.
        metrics.shed.labels(endpoint=request.url.path).inc()
        response = error(request, 503, str(exc))
        response.headers["retry-after"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return client_error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception(
            "serving: %s %s failed (request %s)",
            request.method,
            request.url.path,
            getattr(request.state, "request_id", None),
        )
        return error(request, 500, f"internal error: {type(exc).__name__}")

    async def read_json(request: Request) -> tuple[str, Any]:
        """The request id and the JSON body of a POST, or a RequestError (4xx)."""
        request_id = request.state.request_id
        if request.state.bad_request_id:
            raise RequestError(422, f"X-Request-ID: {REQUEST_ID_RULE}")
        check_content_type(request.headers.get("content-type"))
        body = await read_body(request, params.max_body_bytes)
        return request_id, parse_json(body, params.max_body_bytes, params.max_json_depth)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        received = clock()
        started = time.perf_counter()
        request_id, payload = await read_json(request)
        parsed = parse_predict(payload, params)
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
        await served_together.add(request_id, len(parsed.texts))
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
        return JSONResponse(body_out)

    def log_generations(request_id, received, prompts, rows, latency_ms, ttft_ms, ms_per_token) -> None:
        """One generations-log row per prompt, and the request's metrics."""
        ts = to_utc(received)
        prediction_log.generations.append(
            {
                "request_id": request_id,
                "item": i,
                "ts": ts,
                "prompt": prompt,
                "output": row["text"],
                "tokens_in": row["tokens_in"],
                "tokens_out": row["tokens_out"],
                "finish_reason": row["finish_reason"],
                "latency_ms": latency_ms,
                "ttft_ms": ttft_ms,
                "ms_per_token": ms_per_token,
                "model_version": generator_version,
            }
            for i, (prompt, row) in enumerate(zip(prompts, rows, strict=True))
        )
        metrics.generation_requests.inc()
        metrics.generation_prompts.inc(len(rows))
        metrics.prompt_tokens.inc(sum(r["tokens_in"] for r in rows))
        metrics.ttft.observe(ttft_ms / 1000.0)

    def generate_response(request_id, rows, latency_ms, ttft_ms) -> JSONResponse:
        return JSONResponse(
            {
                "request_id": request_id,
                "model_version": generator_version,
                "generations": rows,
                "latency_ms": latency_ms,
                "ttft_ms": ttft_ms,
            },
            headers={"x-model-version": generator_version},
        )

    def prompt_token_counts(parsed, limit: int) -> list[int]:
        """Each prompt's token count; 413 naming the first prompt over ``limit``."""
        counts = generator.count_tokens(parsed.prompts)
        for i, n in enumerate(counts):
            if n > limit:
                where = "prompt" if parsed.single else f"prompts[{i}]"
                raise RequestError(413, f"{where} has {n} tokens, over the limit of {limit}")
        return counts

    async def answer_by_choice(request_id, received, started, parsed) -> JSONResponse:
        """``choices``: each prompt answered with the choice the model finds most likely as its
        response (``Generator.choose``, what evaluate's ranked QA scores measure); nothing is
        decoded, so the time to first token is the latency and ms per token is the scoring time
        over the choices' tokens."""
        choice_tokens = generator.count_tokens([generator.choice_text(c) for c in parsed.choices])
        longest = max(choice_tokens)
        limit = min(params.max_prompt_tokens, generator.seq_length - longest)
        if limit <= 0:
            raise RequestError(
                413,
                f"choices has a choice of {longest} tokens: no room left for a prompt in the "
                f"generator's {generator.seq_length}-token context",
            )
        prompt_tokens = prompt_token_counts(parsed, limit)

        def choose_all() -> list[int]:
            return [generator.choose(p, parsed.choices)[0] for p in parsed.prompts]

        picked = await generation_batcher.run_exclusive(choose_all)
        latency_ms = (time.perf_counter() - started) * 1000.0
        rows = [
            {
                "text": parsed.choices[k],
                "finish_reason": "choice",
                "tokens_in": n,
                "tokens_out": choice_tokens[k],
            }
            for k, n in zip(picked, prompt_tokens, strict=True)
        ]
        scored = sum(choice_tokens) * len(parsed.prompts)
        log_generations(
            request_id, received, parsed.prompts, rows, latency_ms, latency_ms, latency_ms / max(scored, 1)
        )
        return generate_response(request_id, rows, latency_ms, latency_ms)

    @app.post("/generate")
    async def generate(request: Request) -> JSONResponse:
        received = clock()
        started = time.perf_counter()
        if generator is None or generation_batcher is None:
            raise RequestError(503, NO_GENERATOR)
        request_id, payload = await read_json(request)
        parsed = parse_generate(payload, params)
        try:
            gen_params = generator.default_params(**parsed.overrides)
        except (TypeError, ValueError) as exc:  # GenerateParams names the field: "generate.<field>: ..."
            raise RequestError(422, str(exc).removeprefix("generate.")) from None
        if parsed.choices is not None:
            return await answer_by_choice(request_id, received, started, parsed)
        limit = min(params.max_prompt_tokens, generator.max_prompt_tokens(gen_params.max_new_tokens))
        if limit <= 0:
            raise RequestError(
                422,
                f"max_new_tokens is {gen_params.max_new_tokens}: no room left for a prompt in the "
                f"generator's {generator.seq_length}-token context",
            )
        prompt_token_counts(parsed, limit)
        out = await generation_batcher.submit(parsed.prompts, gen_params)
        done = time.perf_counter()
        latency_ms = (done - started) * 1000.0
        ttft_ms = (out.started - started + out.result.time_to_first_token_s) * 1000.0
        ms_per_token = out.result.per_token_latency_s * 1000.0
        rows = [
            {
                "text": t.text,
                "finish_reason": t.generation.finish_reason,
                "tokens_in": t.generation.prompt_tokens,
                "tokens_out": len(t.generation.tokens),
            }
            for t in out.texts
        ]
        log_generations(request_id, received, parsed.prompts, rows, latency_ms, ttft_ms, ms_per_token)
        return generate_response(request_id, rows, latency_ms, ttft_ms)

    @app.post("/feedback", status_code=202)
    async def feedback(request: Request) -> JSONResponse:
        received = to_utc(clock())
        request_id, payload = await read_json(request)
        items = parse_feedback(payload, model.labels, params.max_batch_texts)

        def write(new: list) -> None:
            prediction_log.labels.append(
                {"request_id": f.request_id, "item": f.item, "ts": received, "label": f.label} for f in new
            )

        try:
            repeats = prediction_log.served.accept(items, write)
        except UnknownRequest as exc:
            raise RequestError(404, str(exc)) from None
        except ConflictingLabel as exc:
            raise RequestError(409, str(exc)) from None
        return JSONResponse(
            {"accepted": len(items), "repeats": repeats, "request_id": request_id, "model_version": version},
            status_code=202,
        )

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "model_version": version,
                "labels": model.labels,
                "generator_version": generator_version,
                "worker": worker,
                "pid": os.getpid(),
            }
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    return app
