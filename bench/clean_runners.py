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

On a shared machine wall times swing with the other load: ``--repeat 3`` interleaves three rounds
and keeps each runner's fastest; the SDK workers' CPU seconds are printed too (steadier than wall).

``.venv/bin/python bench/clean_runners.py [--articles 2000] [--repeat 3]``
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
import threading
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


class CpuSampler:
    """CPU seconds (user + system) of a process and of each of its children, sampled every 0.1 s
    while a run lasts (the pool stops its workers at the end of a job: the last sample counts)."""

    def __init__(self, pid: int):
        import psutil

        self.proc = psutil.Process(pid)
        self.seconds: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self.done.is_set():
            with contextlib.suppress(psutil.Error):
                for p in [self.proc, *self.proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        if p is not self.proc and p.create_time() < self.start:
                            continue  # a worker of the previous job, being stopped
                        t = p.cpu_times()
                        self.seconds[p.pid] = max(self.seconds.get(p.pid, 0.0), t.user + t.system)
            self.done.wait(0.1)

    def __enter__(self) -> CpuSampler:
        self.before = sum(self.proc.cpu_times()[:2])
        self.start = time.time()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(timeout=10)

    def own(self) -> float:
        """CPU seconds the process itself spent during the run."""
        return self.seconds.get(self.proc.pid, self.before) - self.before

    def children(self) -> list[float]:
        return sorted((s for pid, s in self.seconds.items() if pid != self.proc.pid), reverse=True)


@contextlib.contextmanager
def portable_services(logs: Path):
    """A worker pool and the clean job service on loopback; yields (job port, pool port, job
    service pid, pool pid)."""
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
        yield job_port, pool_port, procs[1].pid, procs[0].pid
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
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of the three runs (interleaved); the fastest counts"
    )
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
        best: dict[str, float] = {}
        kept: dict[str, bytes] = {}

        def measure(name: str, label: str, clean: dict) -> float:
            out = tmp / name
            seconds, peak, _ = run_measured(clean_command(tmp / "input", out, clean), cwd=ROOT)
            best[name] = min(best.get(name, seconds), seconds)
            kept[name] = b"".join(p.read_bytes() for p in sorted((out / "documents").iterdir()))
            report = json.loads((out / "report.json").read_text())
            print(
                f"  {label:32s} {seconds:7.1f} s  {n / seconds:7.1f} docs/s  "
                f"peak RSS {peak / 2**20:5.0f} MiB  kept {report['kept']}",
                flush=True,
            )
            return seconds

        with portable_services(tmp) as (job_port, pool_port, job_pid, pool_pid):
            for round_ in range(args.repeat):
                if args.repeat > 1:
                    print(f"round {round_ + 1}:")
                measure("inprocess", "in-process (FnApiRunner)", {})
                for workers in (1, 2):
                    options = [
                        f"--job_endpoint=localhost:{job_port}",
                        "--environment_type=EXTERNAL",
                        f"--environment_config=localhost:{pool_port}",
                        f"--sdk_worker_parallelism={workers}",
                    ]
                    with CpuSampler(job_pid) as runner_cpu, CpuSampler(pool_pid) as pool_cpu:
                        seconds = measure(
                            f"portable{workers}",
                            f"portable, {workers} SDK worker{'s' if workers > 1 else ''}",
                            {"runner": "PortableRunner", "pipeline_options": options},
                        )
                    busy = ", ".join(f"{s:.1f}" for s in pool_cpu.children())
                    print(
                        f"      CPU s: job service (the runner) {runner_cpu.own():.1f}, "
                        f"SDK workers [{busy}] in {seconds:.1f} s wall",
                        flush=True,
                    )
        same = kept["portable1"] == kept["portable2"] == kept["inprocess"]
        rates = {name: n / seconds for name, seconds in best.items()}
        print(f"kept documents byte-identical across the three runners: {same}")
        which = f"fastest of {args.repeat} rounds" if args.repeat > 1 else "one round"
        print(f"docs/s ({which}): " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
        print("ratios:")
        print(f"  portable 1 worker  / in-process  {rates['portable1'] / rates['inprocess']:6.2f}x")
        print(f"  portable 2 workers / in-process  {rates['portable2'] / rates['inprocess']:6.2f}x")
        print(f"  portable 2 workers / 1 worker    {rates['portable2'] / rates['portable1']:6.2f}x")
        print(f"load average after: {os.getloadavg()[0]:.2f} (CPUs: {os.cpu_count()})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
