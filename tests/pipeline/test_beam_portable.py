"""clean beyond one process: Beam's PortableRunner against a job service and an external SDK
worker pool (two workers running bundles), input and output on the local S3 server (moto); and the
Kubeflow component handing a distributed runner the artifacts' object-store URIs.

Everything listens on loopback and every wait is bounded. The S3 endpoint and credentials reach
the SDK workers only through the worker pool's environment, as a cluster sets them on the worker
pods; the job service gets none.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import fsspec
import pytest

from components.common.entry import RUN_RECORD, run_stage
from tests.pipeline.conftest import BIN, ROOT

PREFIX = "lake/portable"
WORKERS = 2
AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
ARTICLES = 3000  # news articles in the compared run: enough that the documents' CPU time per worker
# (~1.5 s each here) stands clear of the run-to-run spread of a worker's fixed costs (2.4-4.2 s seen
# for the idle run on this machine; 900 articles added only 0.2-0.6 s and failed the check)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process this module started and the workers it started (by pid)."""
    import psutil

    children: list = []
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(proc.pid).children(recursive=True)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # the pool's own clean exit: it stops its workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _no_aws(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in AWS_KEYS}


@pytest.fixture(scope="module")
def beam_cluster(s3_server, tmp_path_factory):
    """A worker pool (``worker_pool_main``, the project's python first on PATH, the lake's AWS_*
    variables in its environment) and ``components.clean.job_service``, both on loopback."""
    logs = tmp_path_factory.mktemp("beam-cluster")
    pool_port, job_port = _free_port(), _free_port()
    pool_env = {
        **_no_aws(os.environ),
        **s3_server,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    procs = []
    try:
        pool_log = logs / "pool.log"
        with open(pool_log, "w") as out:
            pool = subprocess.Popen(
                [str(BIN / "python"), "-m", "apache_beam.runners.worker.worker_pool_main",
                 f"--service_port={pool_port}"],
                env=pool_env, stdout=out, stderr=subprocess.STDOUT, cwd=logs,
            )  # fmt: skip
        procs.append(pool)
        job_log = logs / "job_service.log"
        with open(job_log, "w") as out:
            job = subprocess.Popen(
                [str(BIN / "python"), "-m", "components.clean.job_service", "--port", str(job_port)],
                env=_no_aws(os.environ), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        procs.append(job)
        _wait_port(pool_port, pool, "worker pool", pool_log)
        _wait_port(job_port, job, "job service", job_log)
        yield SimpleNamespace(
            pool=pool,
            job=job,
            pool_log=pool_log,
            job_log=job_log,
            env=pool_env,
            options=[
                f"--job_endpoint=localhost:{job_port}",
                "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{pool_port}",
                f"--sdk_worker_parallelism={WORKERS}",
            ],
        )
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _write_lake_input(folder: str, articles: int) -> int:
    """``articles`` news articles, the first 20 twice (exact duplicates), a leaked evaluation text
    and bad lines, as three JSONL shards under ``s3://{folder}/corpus/``; the evaluation file beside
    them. Returns the number of input lines."""
    with open(ROOT / "data" / "raw" / "news_articles.csv", newline="", encoding="utf-8") as f:
        texts = [row["text"] for row, _ in zip(csv.DictReader(f), range(articles), strict=False)]
    lines = [json.dumps({"id": f"n{i:04d}", "text": t}) for i, t in enumerate(texts)]
    lines += [json.dumps({"id": f"x{i:04d}", "text": t}) for i, t in enumerate(texts[:20])]
    lines += ["{not json", json.dumps({"id": "no-text"}), "[1, 2]"]
    for s in range(3):
        with fsspec.open(f"s3://{folder}/corpus/part-{s}.jsonl", "w") as f:
            f.writelines(line + "\n" for line in lines[s::3])
    leak = " ".join(texts[min(7, len(texts) - 1)].split()[10:40])
    with fsspec.open(f"s3://{folder}/task.jsonl", "w") as f:
        f.write(json.dumps({"id": "t0", "text": leak, "label": "positive", "split": "test"}) + "\n")
    return len(lines)


class WorkerCpu:
    """CPU seconds (user + system) of each SDK worker the pool runs, sampled every 0.1 s by its
    ``worker_id`` (the pool stops its workers at the end of the job, so the last sample counts)."""

    def __init__(self, pool_pid: int):
        self.pool_pid = pool_pid
        self.seconds: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        pool = psutil.Process(self.pool_pid)
        while not self._stop.is_set():
            for proc in pool.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    found = re.search(r'worker_id="([^"]+)"', " ".join(proc.cmdline()))
                    if found:
                        t = proc.cpu_times()
                        self.seconds[found.group(1)] = max(
                            self.seconds.get(found.group(1), 0.0), t.user + t.system
                        )
            self._stop.wait(0.1)

    def __enter__(self) -> WorkerCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _files(prefix: str) -> dict[str, bytes]:
    fs = fsspec.filesystem("s3")
    return {path[len(prefix) + 1 :]: fs.cat_file(path) for path in fs.find(prefix)}


def _run_portable(cluster, folder: str, articles: int, params: dict) -> tuple[int, dict, dict[str, float]]:
    """Clean ``articles`` articles from the lake on the portable runner: ``(input lines, metrics,
    CPU seconds per SDK worker)``."""
    lines = _write_lake_input(folder, articles)
    import psutil

    portable = {**params, "runner": "PortableRunner", "pipeline_options": cluster.options}
    job = psutil.Process(cluster.job.pid)
    before = sum(job.cpu_times()[:2])
    with WorkerCpu(cluster.pool.pid) as cpu:
        metrics = run_stage(
            "clean",
            portable,
            input=f"s3://{folder}/corpus",
            decontaminate=f"s3://{folder}/task.jsonl",
            output=f"s3://{folder}/out-portable",
        )
    cpu.seconds["job_service"] = round(sum(job.cpu_times()[:2]) - before, 2)
    return lines, metrics, cpu.seconds


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_clean_on_portable_runner_with_two_workers_matches_in_process(beam_cluster):
    params = {"num_shards": 2, "on_bad_input": "quarantine"}  # quarantine: the idle run keeps ~nothing
    # The idle reference: the same pipeline on 3 articles, so each worker runs every stage's
    # bundles (imports, DoFn set-up, per-bundle costs) with next to no data.
    _, _, idle = _run_portable(beam_cluster, f"{PREFIX}/idle", 3, params)
    n_lines, metrics, busy = _run_portable(beam_cluster, f"{PREFIX}/full", ARTICLES, params)
    run_stage(
        "clean",
        params,
        input=f"s3://{PREFIX}/full/corpus",
        decontaminate=f"s3://{PREFIX}/full/task.jsonl",
        output=f"s3://{PREFIX}/full/out-inprocess",
    )

    # The same files, byte for byte: documents/, dropped/, rejected/, report.json (its Beam
    # counters are committed values, equal on both runners; it holds no wall-clock field),
    # report.md and metrics.json.
    ours, peer = _files(f"{PREFIX}/full/out-portable"), _files(f"{PREFIX}/full/out-inprocess")
    assert sorted(ours) == sorted(peer)
    # Except the entry's run record, which holds each run's own times (components.common.entry).
    assert [name for name in ours if ours[name] != peer[name] and name != RUN_RECORD] == []
    assert {"report.json", "documents/part-00000-of-00002.jsonl", "rejected/rejected.jsonl"} <= set(ours)

    # Exact accounting, on a run where every kind of outcome happened.
    report = json.loads(ours["report.json"])
    assert report["input"] == n_lines
    assert report["input"] == report["kept"] + sum(report["dropped"].values()) + sum(
        report["rejected"].values()
    )
    assert report["kept"] == metrics["kept"] > 0
    assert report["dropped"]["duplicate_exact"] > 0 and report["dropped"]["contaminated"] >= 1
    bad = ("invalid_json", "missing_text", "not_an_object")
    assert {k: report["rejected"][k] for k in bad} == dict.fromkeys(bad, 1)

    # Two SDK workers ran bundles: the pool started two per job (its log names each worker_id,
    # the job service logs the count it ran), and in the full run each worker spent a real share
    # of the CPU time above what a worker of the idle run spent.
    started = re.findall(
        r"Starting worker with command .*worker_id=\"([^\"]+)\"", beam_cluster.pool_log.read_text()
    )
    assert len(started) == 2 * WORKERS, f"the pool started {started} for two jobs"
    busy_job, idle_job = busy.pop("job_service"), idle.pop("job_service")
    assert len(busy) == len(idle) == WORKERS, (busy, idle)
    assert beam_cluster.job_log.read_text().count(f"{WORKERS} SDK workers per environment") == 2
    reference = max(idle.values())
    work = {worker: seconds - reference for worker, seconds in busy.items()}
    total = sum(max(w, 0.0) for w in work.values())
    summary = (
        f"CPU s per worker: full run {busy}, idle run {idle}; job service (the runner): full run "
        f"{busy_job}, idle run {idle_job}"
    )
    assert total >= 1.0, summary
    for worker, seconds in work.items():
        assert seconds >= 0.25 * total, f"{worker}: {seconds:.2f} s of {total:.2f} s of work; {summary}"
    print(summary)


def test_job_service_runs_the_workers_the_job_asks_for():
    from apache_beam.options.pipeline_options import PipelineOptions

    from components.clean.job_service import worker_count

    assert worker_count(PipelineOptions(["--sdk_worker_parallelism=3"])) == 3
    assert worker_count(PipelineOptions([])) == 1  # Beam's default
    assert worker_count(PipelineOptions(["--sdk_worker_parallelism=0"])) == 1  # "runner's choice"


# --- Kubeflow: a distributed runner reads and writes the artifacts' URIs -------------------------


def _artifact(name: str) -> SimpleNamespace:
    return SimpleNamespace(
        path=f"/s3/mlpipeline/run/{name}", uri=f"minio://mlpipeline/run/{name}", metadata={}
    )


@pytest.mark.parametrize(
    ("runner", "expected"),
    [
        ("FnApiRunner", "/s3/mlpipeline/run/{}"),
        ("DirectRunner", "/s3/mlpipeline/run/{}"),
        ("FlinkRunner", "s3://mlpipeline/run/{}"),
        ("DataflowRunner", "s3://mlpipeline/run/{}"),
        ("PortableRunner", "s3://mlpipeline/run/{}"),
    ],
)
def test_clean_component_passes_uris_to_a_distributed_runner(monkeypatch, runner, expected):
    import components.common.kfp as kfp_door
    from components.clean.component import clean

    seen = {}
    monkeypatch.setattr(kfp_door, "enter", lambda *args, **kwargs: seen.update(kwargs))
    data, cleaned = _artifact("data"), _artifact("cleaned")
    clean.func(data=data, params={"runner": runner}, cleaned=cleaned, metrics=SimpleNamespace())
    assert seen["output"] == expected.format("cleaned")
    assert seen["input"] == expected.format("data") + "/corpus.jsonl"
    assert seen["decontaminate"] == [
        expected.format("data") + f"/{name}" for name in ("task.jsonl", "qa.jsonl")
    ]


def test_artifact_location_keeps_s3_and_gcs_uris():
    from components.common.kfp import artifact_location

    for uri in ("s3://lake/run/cleaned", "gs://lake/run/cleaned"):
        artifact = SimpleNamespace(path="/local/cleaned", uri=uri)
        assert artifact_location(artifact, remote=True) == uri
        assert artifact_location(artifact, remote=False) == "/local/cleaned"


def test_compiled_clean_step_chooses_the_uri_for_distributed_runners():
    """The code the cluster runs (the compiled pipeline's clean executor) makes that choice."""
    import yaml

    docs = yaml.safe_load_all((ROOT / "pipelines" / "llm_pipeline.yaml").read_text())
    spec = next(doc for doc in docs if "deploymentSpec" in doc)  # then the platform spec
    command = " ".join(spec["deploymentSpec"]["executors"]["exec-clean"]["container"]["command"])
    assert 'remote = stage_params("clean", params).distributed' in command
    assert "output=artifact_location(cleaned, remote)" in command
    assert "input=a.path(artifact_location(data, remote), a.CORPUS)" in command
