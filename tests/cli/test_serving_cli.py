"""serving CLI: ``python -m serving`` as a real process on loopback; N requests give N log rows
after SIGTERM (the rows were still buffered when the signal came); a hostile body is one log line
with its request id, no traceback; a bad params file exits 2. With ``--generator``: /generate
requests in flight when SIGTERM comes are all answered and all logged (the drain covers them)."""

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
