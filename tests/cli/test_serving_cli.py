"""serving CLI: ``python -m serving`` as a real process on loopback; N requests give N log rows
after SIGTERM (the rows were still buffered when the signal came); a hostile body is one log line
with its request id, no traceback; a bad params file exits 2. With ``--generator``: /generate
requests in flight when SIGTERM comes are all answered and all logged (the drain covers them).
With ``serving.workers`` 2: both workers answer on the one port, a killed one is replaced, /feedback
finds a request whichever worker answered it, /metrics counts every worker's requests, and SIGTERM
drains both (every in-flight request answered and logged once; exit 0); a model that does not load
stops the server with exit 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from monitoring.window import read_window
from serving.__main__ import main
from tests.baseline_fixtures import make_baseline_dir
from tests.serving_fixtures import shared_model_dir
from tests.task_fixtures import make_generator, make_tokenized, write_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return shared_model_dir(tmp_path_factory)


def _start(
    model_dir: Path, log_uri: Path, params: Path, extra: list[str] | None = None
) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model", str(model_dir), "--log", str(log_uri), "--port", "0"]
        + ["--params", str(params)]
        + (extra or []),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines = []
    for line in proc.stdout:  # the server prints one line once its socket is bound
        lines.append(line)
        if line.startswith("serving: listening on "):
            return proc, line.split()[3]
    proc.wait(timeout=10)
    raise AssertionError("server did not start:\n" + "".join(lines[-30:]))


def test_sigterm_flushes_every_logged_request(model_dir, tmp_path):
    # A flush interval far beyond the test: rows reach disk only through the shutdown flush.
    params = write_params(
        tmp_path / "params.yaml", serving={"log_flush_seconds": 3600.0, "log_flush_rows": 100_000}
    )
    log_uri = tmp_path / "log"
    proc, url = _start(model_dir, log_uri, params)
    n = 25
    try:
        with httpx.Client(base_url=url, timeout=30.0) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            ids = []
            for i in range(n):
                response = client.post("/predict", json={"text": f"review {i}: a fine film"})
                assert response.status_code == 200
                ids.append(response.json()["request_id"])
            assert client.post("/predict", json={"text": ""}).status_code == 422
            deep = client.post(
                "/predict",
                content=b"[" * 300_000 + b"]" * 300_000,
                headers={"content-type": "application/json"},
            )
            assert deep.status_code == 400 and deep.json()["request_id"] == deep.headers["x-request-id"]
            unknown = client.post("/feedback", json={"request_id": "never-served", "label": "positive"})
            assert unknown.status_code == 404
            labelled = client.post("/feedback", json={"request_id": ids[0], "label": "positive"})
            assert labelled.status_code == 202
            pending = [
                line
                for line in client.get("/metrics").text.splitlines()
                if line.startswith("serving_log_pending_rows")
            ]
            assert pending == [f"serving_log_pending_rows {float(n)}"]  # all still in memory
        assert not (log_uri / "predictions").exists()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # uvicorn drains, runs the shutdown (the log flush), then re-raises the signal: exit by SIGTERM.
    assert proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
    [line] = [x for x in output.splitlines() if deep.headers["x-request-id"] in x]
    assert "POST /predict -> 400" in line and "levels deep" in line
    frame = read_window(
        str(log_uri), datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    ).frame
    assert len(frame) == n
    assert sorted(frame["request_id"]) == sorted(ids)
    assert frame["text"].str.startswith("review ").all()


def test_bad_params_exit_2_before_loading_the_model(tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", serving={"max_batch_texts": -3})
    assert main(["--model", str(tmp_path / "missing"), "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert "serving.max_batch_texts: must be > 0" in err and len(err.splitlines()) == 1


def test_a_port_variable_that_is_no_number_exits_2(tmp_path, monkeypatch, capsys):
    # Without --port the server takes $PORT (Knative sets it to the containerPort); garbage is refused.
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "$PORT must be a TCP port number, got 'eighty'" in capsys.readouterr().err


def test_sigterm_drains_generation_requests_in_flight(model_dir, tmp_path):
    generator = make_generator(tmp_path / "generator", make_tokenized(tmp_path / "tokenize"))
    # A long batching wait: the requests are still queued for their decode when SIGTERM comes.
    params = write_params(
        tmp_path / "params.yaml",
        serving={"log_flush_seconds": 3600.0, "generate_batch_wait_ms": 1500.0},
    )
    log_uri = tmp_path / "log"
    proc, url = _start(model_dir, log_uri, params, ["--generator", str(generator)])
    n = 6
    try:
        with httpx.Client(base_url=url, timeout=60.0) as client, ThreadPoolExecutor(n) as pool:
            version = client.get("/healthz").json()["generator_version"]
            futures = [
                pool.submit(client.post, "/generate", json={"prompt": f"good film {i}"}) for i in range(n)
            ]
            time.sleep(0.5)  # sent, and waiting for the batch
            proc.send_signal(signal.SIGTERM)
            responses = [f.result() for f in futures]
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert f"generator {version}" in output and "Traceback" not in output
    assert [r.status_code for r in responses] == [200] * n
    assert {r.json()["model_version"] for r in responses} == {version}
    table = pq.read_table(log_uri / "generations")
    assert table.num_rows == n
    assert sorted(table.column("request_id").to_pylist()) == sorted(r.json()["request_id"] for r in responses)
    assert set(table.column("model_version").to_pylist()) == {version}


def test_a_missing_generator_folder_exits_2_naming_it(model_dir, tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml")
    missing = tmp_path / "nope"
    assert main(["--model", str(model_dir), "--generator", str(missing), "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --generator: {missing}: no model.json (not a generator folder)"


def _metric(text: str, name: str) -> float:
    [value] = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return value


def _until_both(get, worker_of, tries: int = 400) -> list:
    """``get()`` on a fresh connection each time until both workers have answered (bounded)."""
    seen: dict[str, object] = {}
    for _ in range(tries):
        response = get()
        seen.setdefault(worker_of(response), response)
        if len(seen) == 2:
            return [seen[w] for w in sorted(seen)]
    raise AssertionError(f"only worker(s) {sorted(seen)} answered {tries} connections")


def test_two_workers_share_the_port_the_feedback_the_metrics_and_the_drain(tmp_path):
    model = make_baseline_dir(tmp_path / "model")  # numpy only: each worker loads it in well under a second
    # Rows reach disk only through the shutdown drain; a long batching wait keeps requests in flight.
    params = write_params(
        tmp_path / "params.yaml",
        serving={"workers": 2, "cpu_threads": 2, "log_flush_seconds": 3600.0, "micro_batch_wait_ms": 1500.0},
    )
    log_uri = tmp_path / "log"
    proc, url = _start(model, log_uri, params)

    def healthz():
        return httpx.get(url + "/healthz", timeout=30.0).json()

    def post(path: str, body: dict) -> httpx.Response:
        return httpx.post(url + path, json=body, timeout=60.0)  # one connection per request

    try:
        first = _until_both(healthz, lambda h: h["worker"])
        assert [h["worker"] for h in first] == [0, 1] and len({h["pid"] for h in first}) == 2
        assert {h["model_version"] for h in first} == {first[0]["model_version"]}

        # A worker that dies is replaced under its index; the other serves meanwhile.
        os.kill(first[1]["pid"], signal.SIGKILL)
        for _ in range(600):
            now = healthz()
            if now["worker"] == 1 and now["pid"] != first[1]["pid"]:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("worker 1 was not replaced")

        n = 32
        with ThreadPoolExecutor(n) as pool:
            answered = list(
                pool.map(lambda i: post("/predict", {"text": f"review {i}: a good film"}), range(n))
            )
        assert [r.status_code for r in answered] == [200] * n
        by_worker = {r.json()["request_id"]: r.headers["x-server-worker"] for r in answered}
        assert set(by_worker.values()) <= {"0", "1"}

        # Feedback for each request, through whichever worker takes the connection: every id is
        # found, also through the worker that did not answer it; a contradiction is refused by both.
        labelled = [post("/feedback", {"request_id": rid, "label": "positive"}) for rid in by_worker]
        assert [(r.status_code, r.json()["repeats"]) for r in labelled] == [(202, 0)] * n
        crossed = [
            rid
            for rid, r in zip(by_worker, labelled, strict=True)
            if r.headers["x-server-worker"] != by_worker[rid]
        ]
        assert crossed, "no feedback was answered by the other worker"
        rid = crossed[0]
        conflicts = _until_both(
            lambda: post("/feedback", {"request_id": rid, "label": "negative"}),
            lambda r: r.headers["x-server-worker"],
        )
        assert [r.status_code for r in conflicts] == [409, 409]
        assert all("already, not 'negative'" in r.json()["error"] for r in conflicts)

        # Either worker's /metrics counts the requests of both (the killed worker answered none).
        for scrape in _until_both(
            lambda: httpx.get(url + "/metrics"), lambda r: r.headers["x-server-worker"]
        ):
            assert _metric(scrape.text, 'serving_requests_total{endpoint="/predict",status="200"}') == n
            assert _metric(scrape.text, 'serving_requests_total{endpoint="/feedback",status="202"}') == n
            workers = [x for x in scrape.text.splitlines() if x.startswith("serving_worker_info{")]
            assert len(workers) == 2  # the live ones only

        # SIGTERM while requests wait for their micro-batch: every one is answered, then both
        # drain. Each goes on a connection a worker has already accepted (a connection still in the
        # kernel's backlog when SIGTERM comes is refused, as by one process), m / 2 per worker.
        m = 12
        clients: dict[str, list[httpx.Client]] = {"0": [], "1": []}
        for _ in range(400):
            client = httpx.Client(base_url=url, timeout=60.0)
            held = clients[client.get("/healthz").headers["x-server-worker"]]
            if len(held) < m // 2:
                held.append(client)
            else:
                client.close()
            if all(len(held) == m // 2 for held in clients.values()):
                break
        kept = clients["0"] + clients["1"]
        assert len(kept) == m
        with ThreadPoolExecutor(m) as pool:
            futures = [
                pool.submit(c.post, "/predict", json={"text": f"late review {i}"}) for i, c in enumerate(kept)
            ]
            time.sleep(0.5)  # sent, and waiting for the batch
            in_flight = sum(not f.done() for f in futures)
            proc.send_signal(signal.SIGTERM)
            late = [f.result() for f in futures]
        for client in kept:
            client.close()
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output[-3000:]
    assert in_flight == m
    assert [r.status_code for r in late] == [200] * m
    assert sorted(r.headers["x-server-worker"] for r in late) == ["0"] * (m // 2) + ["1"] * (m // 2)
    assert "Traceback" not in output
    assert f"worker 1 (pid {first[1]['pid']}) died with signal SIGKILL; starting a new one" in output
    assert "SIGTERM: draining 2 workers" in output
    assert output.count(") drained") == 2
    frame = read_window(
        str(log_uri), datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    ).frame
    ids = [r.json()["request_id"] for r in answered + late]
    assert len(frame) == n + m and frame["request_id"].is_unique  # each request once, none lost
    assert sorted(frame["request_id"]) == sorted(ids)
    # Each worker wrote its own parts (named by its pid).
    assert len({p.name.split("-")[2] for p in (log_uri / "predictions").rglob("part-*.parquet")}) == 2


def test_a_model_that_does_not_load_stops_every_worker(tmp_path, capsys):
    missing = tmp_path / "missing"
    params = write_params(tmp_path / "params.yaml", serving={"workers": 2})
    assert main(["--model", str(missing), "--params", str(params)]) == 2  # before any worker starts
    assert capsys.readouterr().err.strip().startswith(f"error: --model: {missing}: no classifier.json")
    model = make_baseline_dir(tmp_path / "model")
    (model / "model.safetensors").write_bytes(b"not safetensors")  # a folder that fails only to load
    proc = subprocess.run(
        [sys.executable, "-m", "serving", "--model", str(model), "--port", "0"]
        + ["--log", str(tmp_path / "log"), "--params", str(params)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "before it was ready; stopping the server" in proc.stderr
    assert "serving: listening on" not in proc.stdout
