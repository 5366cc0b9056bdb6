"""Micro-batching: concurrent requests share one forward pass (``MicroBatcher``, /predict) or one
batched decode (``GenerationBatcher``, /generate).

On a CPU the GPT's cost per text falls steeply with batch size (one matrix product instead of
many), so the server groups what arrives together: the worker takes the first waiting request,
waits ``wait_s`` for others, then takes every waiting request up to ``max_texts`` texts, and runs
one ``predict`` in its single worker thread (so the model is never used by two threads at once).
Under load, requests pile up during each forward pass and the next pass takes them all; a lone
request waits only ``wait_s``.

Admission: with a bound (``max_queued``: texts, or prompts, submitted and not yet answered), a
request that would go over it is refused with ``Overloaded`` (the server answers 503 with
Retry-After) before it reaches the model, instead of joining a queue whose wait would grow without
end: the model's queue, its wait and its memory stay bounded. It does not bound the wait in front
of the handler (HTTP parsing under many connections; see README's overload figures).
``retry_after_s`` is the time the current backlog takes at the last measured rate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from llm.served import Predictions


class Overloaded(Exception):
    """The batcher's bound is reached: refuse now (HTTP 503 + Retry-After), do not queue."""

    def __init__(self, pending: int, limit: int, retry_after_s: int, unit: str):
        super().__init__(
            f"overloaded: {pending} {unit} waiting, the limit is {limit}; retry in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


class _Admission:
    """Counts what was admitted and not yet answered; refuses what would go over ``limit`` (0 = no
    limit). The rate (items per second of compute) is the last batch's."""

    def __init__(self, limit: int, unit: str):
        self.limit = limit
        self.unit = unit
        self.pending = 0
        self.peak = 0  # most items ever pending at once (tests, metrics)
        self.rate = 0.0

    def admit(self, n: int) -> None:
        if self.limit and self.pending + n > self.limit:
            backlog_s = self.pending / self.rate if self.rate > 0 else 1.0
            raise Overloaded(self.pending, self.limit, max(1, math.ceil(backlog_s)), self.unit)
        self.pending += n
        self.peak = max(self.peak, self.pending)

    def done(self, n: int, seconds: float | None = None) -> None:
        self.pending -= n
        if seconds:
            self.rate = n / seconds


@dataclass
class _Job:
    texts: Sequence[str]
    future: asyncio.Future = field(repr=False)


@dataclass(frozen=True)
class BatchResult:
    """One request's results, and its share of the forward pass it ran in."""

    predictions: Predictions
    compute_ms: float  # per text: forward-pass time / texts in the pass (ms)
    batch_texts: int  # texts in the forward pass this request ran in


class MicroBatcher:
    """``await submit(texts)`` -> BatchResult. ``start()`` inside the event loop, ``close()`` at exit."""

    def __init__(
        self,
        predict: Callable[[Sequence[str]], Predictions],
        max_texts: int = 64,
        wait_s: float = 0.001,
        on_batch: Callable[[int, float], None] | None = None,
        max_queued: int = 0,
    ):
        self.admission = _Admission(max_queued, "texts")
        self._predict = predict
        self.max_texts = max_texts
        self.wait_s = wait_s
        self._on_batch = on_batch  # called with (texts, seconds) after each forward pass
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def submit(self, texts: Sequence[str]) -> BatchResult:
        if self._queue is None or self._worker is None or self._worker.done():
            raise RuntimeError("the batcher is not running")
        self.admission.admit(len(texts))
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(texts, future))
        return await future

    async def close(self) -> None:
        """Finish every queued request, then stop the worker."""
        if self._queue is not None and self._worker is not None:
            await self._queue.put(None)
            await self._worker
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            jobs = [first]
            if self.wait_s > 0:
                await asyncio.sleep(self.wait_s)
            n = len(first.texts)
            while n < self.max_texts and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:  # finish this batch, then stop
                    stopping = True
                    break
                jobs.append(job)
                n += len(job.texts)
            texts = [t for job in jobs for t in job.texts]
            started = time.perf_counter()
            try:
                result = await loop.run_in_executor(self._executor, self._predict, texts)
            except Exception as exc:  # every request of the batch gets the error
                self.admission.done(len(texts))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            seconds = time.perf_counter() - started
            self.admission.done(len(texts), seconds)
            if self._on_batch is not None:
                self._on_batch(len(texts), seconds)
            share = seconds * 1000.0 / max(len(texts), 1)
            start = 0
            for job in jobs:
                end = start + len(job.texts)
                part = Predictions(
                    result.labels[start:end], result.scores[start:end], result.tokens[start:end]
                )
                if not job.future.done():  # the client may have gone away
                    job.future.set_result(BatchResult(part, share, len(texts)))
                start = end


# --- generation ----------------------------------------------------------------------------------


@dataclass
class _GenerateJob:
    prompts: Sequence[str]
    params: Any  # llm.gpt.generate.GenerateParams
    key: Any  # the params the batch must share: the seed taken out (it goes per prompt)
    future: asyncio.Future = field(repr=False)


@dataclass(frozen=True)
class GenerateBatchResult:
    """One request's generations, and the decode it ran in."""

    texts: list  # llm.gpt.generate.TextGeneration, one per prompt of the request
    result: Any  # the batch's llm.gpt.generate.GenerateResult (timings of the whole decode)
    started: float  # time.perf_counter() when the batched decode began (the request's queue wait ends)
    batch_prompts: int  # prompts in the decode this request ran in


class GenerationBatcher:
    """``await submit(prompts, params)`` -> GenerateBatchResult; ``start()`` / ``close()`` as MicroBatcher.

    The MicroBatcher's design for ``generate``: one worker thread (the model is never used by two
    threads at once); the worker takes the oldest waiting request, waits ``wait_s`` for others,
    then runs one decode over the oldest request and every waiting request with the same decoding
    settings, up to ``max_prompts`` prompts in all. Requests with other settings wait, in arrival
    order, for a later decode. The seed is not a shared setting: a sampled request's prompt ``i``
    samples with its own generator seeded ``seed + i`` (``generate(..., seeds=...)``), so its text
    does not depend on what it was batched with; greedy requests (temperature 0) ignore the seed
    and all batch together. Prompts of different lengths share a decode by left padding
    (llm.gpt.generate), so N concurrent greedy requests cost about one decode of the longest.
    """

    def __init__(
        self,
        generate: Callable[..., Any],
        max_prompts: int = 16,
        wait_s: float = 0.005,
        on_batch: Callable[[int, Any], None] | None = None,
        max_queued: int = 0,
    ):
        self.admission = _Admission(max_queued, "prompts")
        self._generate = generate  # (prompts, params, seeds=...) -> (texts, GenerateResult)
        self.max_prompts = max_prompts
        self.wait_s = wait_s
        self._on_batch = on_batch  # called with (prompts, GenerateResult) after each decode
        self._queue: asyncio.Queue[_GenerateJob | None] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self.calls = 0  # decodes run (for the tests and the benchmark)

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="generation-batcher")

    async def submit(self, prompts: Sequence[str], params: Any) -> GenerateBatchResult:
        if self._queue is None or self._worker is None or self._worker.done():
            raise RuntimeError("the generation batcher is not running")
        self.admission.admit(len(prompts))
        future = asyncio.get_running_loop().create_future()
        key = dataclasses.replace(params, seed=0)
        await self._queue.put(_GenerateJob(list(prompts), params, key, future))
        return await future

    async def run_exclusive(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the decode thread, between decodes: other work on the generator's model
        (POST /generate's choices) never runs beside a decode."""
        if self._worker is None or self._worker.done():
            raise RuntimeError("the generation batcher is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        """Finish every queued request, then stop the worker."""
        if self._queue is not None and self._worker is not None:
            await self._queue.put(None)
            await self._worker
        self._executor.shutdown(wait=True)

    def _take(self, pending: deque[_GenerateJob]) -> list[_GenerateJob]:
        """The oldest job and the waiting jobs that share its settings, within max_prompts."""
        first = pending.popleft()
        jobs, n, rest = [first], len(first.prompts), deque()
        while pending:
            job = pending.popleft()
            if job.key == first.key and n + len(job.prompts) <= self.max_prompts:
                jobs.append(job)
                n += len(job.prompts)
            else:
                rest.append(job)
        pending.extend(rest)
        return jobs

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        pending: deque[_GenerateJob] = deque()
        stopping = False
        while True:
            if not pending:
                if stopping:
                    break
                job = await self._queue.get()
                if job is None:
                    break
                pending.append(job)
                if self.wait_s > 0:
                    await asyncio.sleep(self.wait_s)
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:  # finish what is waiting, then stop
                    stopping = True
                else:
                    pending.append(job)
            jobs = self._take(pending)
            params = jobs[0].params
            prompts = [p for job in jobs for p in job.prompts]
            seeds = None
            if not params.greedy:
                seeds = [job.params.seed + i for job in jobs for i in range(len(job.prompts))]
            started = time.perf_counter()
            try:
                texts, result = await loop.run_in_executor(
                    self._executor, functools.partial(self._generate, prompts, params, seeds=seeds)
                )
            except Exception as exc:  # every request of the batch gets the error
                self.admission.done(len(prompts))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.admission.done(len(prompts), time.perf_counter() - started)
            self.calls += 1
            if self._on_batch is not None:
                self._on_batch(len(prompts), result)
            start = 0
            for job in jobs:
                end = start + len(job.prompts)
                if not job.future.done():  # the client may have gone away
                    job.future.set_result(
                        GenerateBatchResult(list(texts[start:end]), result, started, len(prompts))
                    )
                start = end
