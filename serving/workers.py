"""Running the server: one process (``serving.workers`` 1), or a parent and its worker processes.

``build_app`` loads the model folder (and the generator folder) through the floor's loaders and
makes the app; ``bind`` makes the socket; ``serve_in_process`` runs uvicorn on it in this process
(the default, and what a KServe pod of one worker runs).

With ``serving.workers`` N > 1, ``Supervisor`` (the parent) binds the port (``SO_REUSEPORT``, not
listening: it holds the port and learns it when ``--port 0``), then starts N worker processes
(multiprocessing's spawn: fresh interpreters; the parent never imports torch) that each load their
own copy of the model, with ``Settings.worker_threads`` torch threads, then bind a socket of their
own to the same port (``SO_REUSEPORT``) and run uvicorn on it: the kernel spreads new connections
evenly over the workers' sockets (by a hash of the client's address and port), as gunicorn's
``--reuse-port`` and nginx's ``reuseport`` do. One socket shared by all (``uvicorn --workers``)
gave the connections to whichever worker woke first: 26 of 32 keep-alive connections to one worker
here, the other nearly idle. A worker listens only once its model is loaded. The parent prints the
``serving: listening on`` line once every worker is ready (its app started), so a client that waits
for it finds all of them serving.

What the workers share, and how (``run_dir``, a temporary folder the parent makes and removes):

- the prediction log's URI: each worker buffers and writes its own rows, in parts named by its
  pid (serving.prediction_log), so every request is logged once, by the worker that answered it;
- ``/feedback``'s request ids: one ``SharedServedRequests`` (SQLite, ``run_dir/served.sqlite``),
  so a label finds its request whichever worker answered it, with the same 404/409 checks;
- ``/metrics``: prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` =
  ``run_dir/metrics``), so any worker's answer counts the requests of all of them
  (serving.app.ServerMetrics); ``serving_worker_info`` lists the live workers.

Not shared: the micro-batch queues and their bounds (``max_queued_texts``, ``max_queued_prompts``
hold per worker), and the model (one copy per worker: N times its memory).

Signals and exits, as users of gunicorn and ``uvicorn --workers`` expect:

- SIGTERM or SIGINT to the parent: it sends SIGTERM to every worker; each stops accepting,
  answers its in-flight and queued requests (up to ``serving.shutdown_timeout_s``) and writes its
  buffered log rows, then exits 0 (a connection it had not accepted yet is refused, as by one
  process); the parent exits 0 once all have, 1 if
  any failed to drain or outlived ``shutdown_timeout_s + DRAIN_MARGIN_S`` (then it is killed).
- A worker that dies after it was ready (killed, out of memory, a crash) is reported on the
  parent's log with its exit code or signal, and a new one takes its index; its rows still in
  memory are lost with it (``serving.log_flush_seconds`` bounds how many).
- A worker that dies before it is ready (the model does not load, the port cannot be served) stops
  the server: the parent stops the others and exits 1 (gunicorn's boot-error rule), rather than
  starting it again and again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from serving.settings import Settings

log = logging.getLogger("serving")

DRAIN_MARGIN_S = 60.0  # past shutdown_timeout_s: time a worker has to write its log rows and exit (seconds)
SERVED_DB = "served.sqlite"
METRICS_DIR = "metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BACKLOG = 2048  # connections the kernel holds for the server before it refuses more (uvicorn's default)


@dataclass(frozen=True)
class ServeSpec:
    """What every worker serves: the folders and the log URI (the CLI's arguments) and the settings."""

    model: str  # model folder (llm.served.load_model)
    generator: str | None  # generator folder (llm.generator.load_generator); None = no /generate
    log: str  # prediction-log URI (folder or s3://...)
    params: Settings


def build_app(spec: ServeSpec, worker: int = 0, threads: int | None = None, served: Any = None):
    """Load the model (and generator) and make the app; ``threads``: torch threads (None =
    ``spec.params.cpu_threads``); ``served``: the feedback ids store (None = this process's own)."""
    from llm.served import load_model
    from serving.app import create_app
    from serving.prediction_log import PredictionLog

    params = spec.params
    threads = params.cpu_threads if threads is None else threads
    model = load_model(spec.model, batch_size=params.eval_batch_size, cpu_threads=threads)
    prediction_log = PredictionLog(
        spec.log,
        params.log_flush_rows,
        params.log_flush_seconds,
        feedback_window_requests=params.feedback_window_requests,
        served=served,
    )
    generator = None
    if spec.generator is not None:
        from llm.generator import load_generator

        generator = load_generator(spec.generator, cpu_threads=threads)
    return create_app(model, params, prediction_log, generator=generator, worker=worker)


def served_line(app: Any) -> str:
    """``model VERSION[, generator VERSION]``: what the listening line names."""
    text = f"model {app.state.model.version}"
    if app.state.generator is not None:
        text += f", generator {app.state.generator.version}"
    return text


def bind(host: str, port: int, reuse_port: bool = False) -> tuple[socket.socket, str, int]:
    """A TCP socket bound to ``host:port`` (0 = a free port), not yet listening (uvicorn listens on
    it, with ``BACKLOG``); its shown host (IPv6 in brackets) and port. ``reuse_port``: several
    sockets of this user may bind the same port (SO_REUSEPORT), as the workers do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    bound_host, bound_port = sock.getsockname()[:2]
    return sock, (f"[{bound_host}]" if family == socket.AF_INET6 else bound_host), bound_port


def uvicorn_server(app: Any, params: Settings, on_started: Any = None):
    """A uvicorn server for ``app`` with the house settings; ``on_started()`` is called once the
    app's startup is done and the socket is served."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_started is not None:
                on_started()

    config = uvicorn.Config(
        app,
        log_level="info",
        access_log=False,  # the prediction log and /metrics record every request already
        timeout_graceful_shutdown=params.shutdown_timeout_s,
        lifespan="on",
    )
    return Server(config)


def serve_in_process(spec: ServeSpec, sock: socket.socket, shown: str) -> int:
    """One process: listen at once (a client that connects while the model loads waits in the
    backlog instead of being refused), load, print the listening line, serve until SIGTERM/SIGINT
    (then drain)."""
    sock.listen(BACKLOG)
    app = build_app(spec)
    server = uvicorn_server(app, spec.params)
    print(f"serving: listening on http://{shown} ({served_line(app)})", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        app.state.prediction_log.close()  # a no-op after a clean shutdown; a last chance after a failed one
    return 0


# --- several workers ------------------------------------------------------------------------------


def _worker_main(
    spec: ServeSpec, worker: int, threads: int, address: tuple[str, int], ready: Connection, run_dir: str
) -> None:
    """A worker process: load, bind ``address`` (SO_REUSEPORT), serve until SIGTERM, drain, exit 0
    (1 if the drain failed)."""
    from components.common.entry import setup_logging
    from serving.prediction_log import SharedServedRequests

    setup_logging()
    server: Any = None
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        # Before uvicorn runs (loading) and after it (its re-raise of the signal it caught): stop
        # without dying by the signal, so the exit status says whether the drain went well.
        nonlocal stopping
        stopping = True
        if server is not None:
            server.should_exit = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    served = SharedServedRequests(Path(run_dir) / SERVED_DB, spec.params.feedback_window_requests)
    app = build_app(spec, worker=worker, threads=threads, served=served)
    server = uvicorn_server(app, spec.params, on_started=lambda: ready.send(served_line(app)))
    if stopping:  # told to stop while loading: nothing was served
        app.state.prediction_log.close()
        sys.exit(0)
    sock = bind(*address, reuse_port=True)[0]
    try:
        server.run(sockets=[sock])
    finally:
        app.state.prediction_log.close()
        sock.close()
    sys.exit(0 if app.state.drained else 1)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


@dataclass
class _Worker:
    index: int
    process: Any  # multiprocessing.Process
    ready: Connection | None  # the parent's end of the worker's ready pipe; None once it is ready
    started: float  # time.monotonic() at start


class Supervisor:
    """The parent of ``params.workers`` worker processes serving the port of ``sock`` (bound with
    ``reuse_port``, never listening); ``run()`` -> exit status."""

    def __init__(self, spec: ServeSpec, sock: socket.socket, shown: str):
        self.spec = spec
        self.params = spec.params
        self.sock = sock
        self.address = sock.getsockname()[:2]
        self.shown = shown
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.deadline = float("inf")
        self.failed = False
        self.announced = False
        self.cores = len(os.sched_getaffinity(0))
        self.context = multiprocessing.get_context("spawn")
        self.run_dir = Path(tempfile.mkdtemp(prefix="serving-"))

    def _start(self, index: int) -> None:
        parent_end, child_end = self.context.Pipe(duplex=False)
        threads = self.params.worker_threads(index, self.cores)
        process = self.context.Process(
            target=_worker_main,
            args=(self.spec, index, threads, self.address, child_end, str(self.run_dir)),
            name=f"serving-worker-{index}",
        )
        process.start()
        child_end.close()
        self.workers[index] = _Worker(index, process, parent_end, time.monotonic())
        log.info("serving: worker %d started (pid %d, %d torch threads)", index, process.pid, threads)

    def stop(self, signum: int | None = None, frame: Any = None) -> None:
        """Drain every worker (the SIGTERM/SIGINT handler; also called on a boot failure)."""
        if self.stopping:
            return
        self.stopping = True
        self.deadline = time.monotonic() + self.params.shutdown_timeout_s + DRAIN_MARGIN_S
        if signum is not None:
            log.info("serving: %s: draining %d workers", signal.Signals(signum).name, len(self.workers))
        for w in self.workers.values():
            if w.process.is_alive():
                os.kill(w.process.pid, signal.SIGTERM)

    def _reap(self, w: _Worker) -> None:
        from prometheus_client import multiprocess

        w.process.join()
        code = w.process.exitcode
        multiprocess.mark_process_dead(w.process.pid, str(self.run_dir / METRICS_DIR))
        del self.workers[w.index]
        if w.ready is not None:
            w.ready.close()
        if self.stopping:
            if code != 0:
                self.failed = True
                log.error(
                    "serving: worker %d (pid %d) stopped with %s", w.index, w.process.pid, _exit_text(code)
                )
            else:
                log.info("serving: worker %d (pid %d) drained", w.index, w.process.pid)
        elif w.ready is not None:
            self.failed = True
            log.error(
                "serving: worker %d (pid %d) exited with %s before it was ready; stopping the server",
                w.index,
                w.process.pid,
                _exit_text(code),
            )
            self.stop()
        else:
            log.error(
                "serving: worker %d (pid %d) died with %s; starting a new one",
                w.index,
                w.process.pid,
                _exit_text(code),
            )
            self._start(w.index)

    def run(self) -> int:
        (self.run_dir / METRICS_DIR).mkdir()
        # The workers inherit it (spawn copies the environment), before they import prometheus_client.
        os.environ[MULTIPROC_ENV] = str(self.run_dir / METRICS_DIR)
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self.params.workers):
                if not self.stopping:
                    self._start(index)
            while self.workers:
                self._step()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for w in list(self.workers.values()):  # only after an error in this loop
                w.process.kill()
                w.process.join()
            self.sock.close()
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return 1 if self.failed else 0

    def _step(self) -> None:
        waiting = {w.ready: w for w in self.workers.values() if w.ready is not None}
        sentinels = {w.process.sentinel: w for w in self.workers.values()}
        for item in wait([*waiting, *sentinels], timeout=0.5):
            if item in waiting:
                w = waiting[item]
                try:
                    served = item.recv()
                except EOFError:  # it died before it was ready: its sentinel says so
                    continue
                item.close()
                w.ready = None
                log.info(
                    "serving: worker %d (pid %d) ready in %.1f s",
                    w.index,
                    w.process.pid,
                    time.monotonic() - w.started,
                )
                if (
                    not self.announced
                    and not self.stopping
                    and all(x.ready is None for x in self.workers.values())
                ):
                    self.announced = True
                    print(
                        f"serving: listening on http://{self.shown} ({served}, {self.params.workers} workers)",
                        flush=True,
                    )
        for w in list(self.workers.values()):
            if not w.process.is_alive():
                self._reap(w)
        if self.stopping and time.monotonic() > self.deadline:
            for w in self.workers.values():
                log.error(
                    "serving: worker %d (pid %d) did not drain in time; killing it", w.index, w.process.pid
                )
                w.process.kill()
            self.failed = True
            self.deadline = float("inf")
