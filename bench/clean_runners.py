"""Throughput of the clean stage on three Beam runners, on the same input, in the same run:
the in-process FnApiRunner (the default), and the PortableRunner against ``components.clean.
job_service`` with an external SDK worker pool (``worker_pool_main``) at 1 and at 2 workers.

Input: the news sample (``--articles N``, default all 3.8k) as 4 JSONL files on local disk (the
workers share this machine's disk). Each run is a fresh process running the stage with the demo
params; wall time includes start-up (and, for the portable runs, starting the SDK workers), the
figure a user waits for. Prints docs/s per runner and the ratios portable / in-process and
2 workers / 1 worker. Peak RSS is the launching process tree's (the portable runs' SDK workers
are the pool's children, not counted). On a machine with few cores the portable runs pay for gRPC, pickling and the
extra worker processes; the ratio that matters on a cluster is 2 workers / 1 worker.

``.venv/bin/python bench/clean_runners.py [--articles 2000]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, clean_command, news_documents, run_measured, write_jsonl  # noqa: E402

SHARDS = 4
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bench: {what} did not start") from None
            time.sleep(0.2)


@contextlib.contextmanager
def portable_services(logs: Path):
    """A worker pool and the clean job service on loopback; yields (job port, pool port)."""
    pool_port, job_port = _free_port(), _free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    procs: list[subprocess.Popen] = []
    try:
        with open(logs / "pool.log", "w") as out:
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "python"),
                        "-m",
                        "apache_beam.runners.worker.worker_pool_main",
                        f"--service_port={pool_port}",
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=logs,
                )  # fmt: skip
            )
        with open(logs / "job_service.log", "w") as out:
            procs.append(
                subprocess.Popen(
                    [str(BIN / "python"), "-m", "components.clean.job_service", "--port", str(job_port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )  # fmt: skip
            )
        _wait_port(pool_port, procs[0], "worker pool")
        _wait_port(job_port, procs[1], "job service")
        yield job_port, pool_port
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the pool stops its workers on a clean exit
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=0, help="news articles to use (0 = all)")
    args = parser.parse_args(argv)

    docs = news_documents()
    if args.articles:
        docs = docs[: args.articles]
    n = len(docs)
    with tempfile.TemporaryDirectory(prefix="clean-runners-") as tmp:
        tmp = Path(tmp)
        for s in range(SHARDS):
            write_jsonl(tmp / "input" / f"part-{s}.jsonl", docs[s::SHARDS])
        print(f"input: {n} news documents in {SHARDS} JSONL files; load average {os.getloadavg()[0]:.2f}")
        rates: dict[str, float] = {}
        kept: dict[str, bytes] = {}

        def measure(name: str, label: str, clean: dict) -> None:
            out = tmp / name
            seconds, peak, _ = run_measured(clean_command(tmp / "input", out, clean), cwd=ROOT)
            rates[name] = n / seconds
            kept[name] = b"".join(p.read_bytes() for p in sorted((out / "documents").iterdir()))
            report = json.loads((out / "report.json").read_text())
            print(
                f"  {label:32s} {seconds:7.1f} s  {rates[name]:7.1f} docs/s  "
                f"peak RSS {peak / 2**20:5.0f} MiB  kept {report['kept']}",
                flush=True,
            )

        measure("inprocess", "in-process (FnApiRunner)", {})
        with portable_services(tmp) as (job_port, pool_port):
            for workers in (1, 2):
                options = [
                    f"--job_endpoint=localhost:{job_port}",
                    "--environment_type=EXTERNAL",
                    f"--environment_config=localhost:{pool_port}",
                    f"--sdk_worker_parallelism={workers}",
                ]
                measure(
                    f"portable{workers}",
                    f"portable, {workers} SDK worker{'s' if workers > 1 else ''}",
                    {"runner": "PortableRunner", "pipeline_options": options},
                )
        same = kept["portable1"] == kept["portable2"] == kept["inprocess"]
        print(f"kept documents byte-identical across the three runs: {same}")
        print("ratios:")
        print(f"  portable 1 worker  / in-process  {rates['portable1'] / rates['inprocess']:6.2f}x")
        print(f"  portable 2 workers / in-process  {rates['portable2'] / rates['inprocess']:6.2f}x")
        print(f"  portable 2 workers / 1 worker    {rates['portable2'] / rates['portable1']:6.2f}x")
        print(f"load average after: {os.getloadavg()[0]:.2f} (CPUs: {os.cpu_count()})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
