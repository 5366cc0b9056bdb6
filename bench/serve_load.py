"""Bounded load test of the model server on loopback, with the released model's own throughput as the peer.

    .venv/bin/python bench/serve_load.py [--model DIR] [--workers N] [--duration 60] [--clients 32]
                                         [--texts-per-request 1]

1. Peer, in this process: the served model's direct ``predict`` (``llm.served.load_model``, the
   server's own loader and ``serving.cpu_threads``) at 1, 8, 32 and 64 texts per call, each after a
   warm-up; the best of them is the offline throughput the server is held to. Its CPU seconds
   (this process's, all threads) are measured with it.
2. The server (``python -m serving``) as a subprocess on 127.0.0.1, a free port, ``serving``
   defaults (``--workers`` N sets serving.workers); ``--clients`` concurrent clients (a lean
   HTTP/1.1 keep-alive client on asyncio streams, in this process: ``load``), each sending one
   review per request (``--texts-per-request`` more, as a bulk client would) back to back, for
   ``--duration`` seconds. The CPU seconds of the server (every process of it), of the client and
   of the idle CPUs are measured over that phase; what is left is other processes' (on a shared
   machine, other users').
3. Overload (``--overload-clients``, default 512, for ``--overload-seconds``): far more clients
   than the server serves; figures for the admitted requests (latency against the normal phase's)
   and the 503 refusals (with Retry-After; how fast they come), the server's RSS before, after the
   burst and after a recovery phase at ``--clients``; then SIGTERM.
4. Figures: requests/s, p50/p95/p99 client-side latency, errors (goal 0), mean micro-batch size,
   the model-only throughput inside the server (texts / forward-pass seconds, from /metrics), and
   the prediction log's rows after shutdown against the requests answered (goal: equal). Ratios:

   - server / best offline throughput (goal >= 0.9), as measured: the server shares the machine's
     cores with the load client (and with whatever else runs), the peer had them alone;
   - the same per CPU-second (texts per server CPU-second / texts per peer CPU-second): what the
     server makes of the CPU it got, with the client's share (printed) taken out;
   - p50 against the queueing bound clients / throughput (Little's law for closed-loop clients
     with no think time: the mean wait when every request only queues for the server; goal within
     1.2x).

The model: ``--model DIR`` if given; else what deploy released (``outputs/deploy/model``, written by
``make run``: a GPT classifier or the TF-IDF baseline, named in ``outputs/deploy/release.json``);
without a release, a classifier of the CPU demo's exact shape (pretrain defaults: 4 layers, width
256, seq 256; finetune max_length 64; an 8k BPE tokenizer trained on the review sample) with
untrained weights, built once into .cache/bench/model. Nothing leaves loopback; every loop is
bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH_MODEL = ROOT / ".cache" / "bench" / "model"
RELEASE = ROOT / "outputs" / "deploy"
PER_CALL = (1, 8, 32, 64)  # texts per direct predict call of the peer (64 = serving.micro_batch_texts)
REVIEWS = ROOT / "data" / "raw" / "rotten_tomatoes.csv.bz2"


def review_texts(n: int = 20_000) -> list[str]:
    """Review snippets from the embedded sample (synthetic sentences if it is absent)."""
    if REVIEWS.exists():
        import pandas as pd

        df = pd.read_csv(REVIEWS, usecols=["category", "text"]).dropna()
        texts = df.loc[df["category"] != "plot", "text"].tolist()
        if texts:
            return texts[:n]
    import random

    from tests.task_fixtures import sentiment_text

    rng = random.Random(0)
    return [sentiment_text(rng, rng.random() < 0.5) for _ in range(n)]


def demo_model_dir() -> Path:
    """A classifier folder of the CPU demo's shape with untrained weights (built once)."""
    from llm.classifier import CONFIG_FILE

    if (BENCH_MODEL / CONFIG_FILE).exists():
        return BENCH_MODEL
    import shutil

    import torch

    from components.finetune.params import Params as FinetuneParams
    from components.pretrain.params import Params as PretrainParams
    from components.tokenize.core import train_tokenizer
    from components.tokenize.params import Params as TokenizeParams
    from llm.classifier import TOKENIZER_FILE, ClassifierConfig, build_classifier, save_classifier
    from llm.gpt import GPTShape, megatron_runtime
    from llm.tokenizer import special_ids

    print(
        "bench: building a demo-shaped classifier (untrained) into", BENCH_MODEL.relative_to(ROOT), flush=True
    )
    tokenizer = train_tokenizer(review_texts(), TokenizeParams().vocab_size)
    pretrain, finetune = PretrainParams(), FinetuneParams()
    m = pretrain.model
    multiple = pretrain.make_vocab_size_divisible_by
    shape = GPTShape(
        vocab_size=-(-tokenizer.get_vocab_size() // multiple) * multiple,
        seq_length=m.seq_length,
        num_layers=m.num_layers,
        hidden_size=m.hidden_size,
        num_attention_heads=m.num_attention_heads,
        ffn_hidden_size=m.ffn_hidden_size,
    )
    ids = special_ids(tokenizer)
    config = ClassifierConfig(
        gpt=shape,
        labels=list(finetune.labels),
        max_length=finetune.max_length,
        pooling=finetune.pooling,
        pad_id=ids["pad_id"],
        eod_id=ids["eod_id"],
    )
    tmp = BENCH_MODEL.with_name("model.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with megatron_runtime(seed=0):
        torch.manual_seed(0)
        save_classifier(build_classifier(config), tmp)
    (tmp / TOKENIZER_FILE).write_text(tokenizer.to_str() + "\n")
    shutil.rmtree(BENCH_MODEL, ignore_errors=True)
    tmp.rename(BENCH_MODEL)
    return BENCH_MODEL


def choose_model(arg: str | None) -> tuple[Path, str]:
    """The model folder to serve, and what it is."""
    if arg:
        return Path(arg), "given with --model"
    release = RELEASE / "release.json"
    if release.exists():
        import json

        info = json.loads(release.read_text())
        return RELEASE / "model", f"released by deploy: {info.get('kind')} {info.get('version')}"
    return demo_model_dir(), "no release (run `make run` first): an untrained classifier of the demo's shape"


def peer_throughput(model_dir: Path, texts: list[str], seconds: float, threads: int) -> dict[int, dict]:
    """The model's direct predict at each of PER_CALL texts per call: texts/s and texts per CPU-second."""
    from llm.served import load_model

    model = load_model(model_dir, batch_size=64, cpu_threads=threads)
    out = {}
    for per_call in PER_CALL:
        # Warm-up, not counted: the first forward pass of each new (batch, length) shape builds
        # its CPU kernels, which would make a short measurement several times too slow.
        for counted, length in ((False, min(seconds, 2.0)), (True, seconds)):
            done, i = 0, 0
            cpu, started = time.process_time(), time.perf_counter()
            while time.perf_counter() - started < length:
                model.predict(texts[i : i + per_call])
                done += per_call
                i = (i + per_call) % (len(texts) - per_call)
            if counted:
                wall, cpu = time.perf_counter() - started, time.process_time() - cpu
                out[per_call] = {"rate": done / wall, "per_cpu_s": done / cpu, "cores": cpu / wall}
    return out


def _tree(process) -> list:
    """``process`` and its live descendants (psutil): every process of a server of several workers."""
    return [process, *process.children(recursive=True)]


def cpu_seconds(process) -> float:
    """User + system CPU seconds of ``process`` and its live descendants."""
    import psutil

    total = 0.0
    for p in _tree(process):
        with contextlib.suppress(psutil.Error):  # it ended meanwhile
            t = p.cpu_times()
            total += t.user + t.system
    return total


def idle_seconds() -> float:
    """Seconds the machine's CPUs have been idle (all of them together; psutil)."""
    import psutil

    t = psutil.cpu_times()
    return t.idle + t.iowait


def rss_bytes(process) -> int:
    """Resident memory of ``process`` and its live descendants (bytes)."""
    import psutil

    total = 0
    for p in _tree(process):
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def request_bytes(texts: list[str], per_request: int) -> list[bytes]:
    """Ready-made ``POST /predict`` requests (HTTP/1.1, keep-alive), ``per_request`` texts each,
    so the load client spends no CPU building them."""
    import json

    out = []
    for i in range(0, len(texts) - per_request + 1, per_request):
        chunk = texts[i : i + per_request]
        body = json.dumps({"text": chunk[0]} if per_request == 1 else {"texts": chunk}).encode()
        head = (
            "POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def load(url: str, requests: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` closed-loop clients, one keep-alive connection each, sending ``requests`` back
    to back for ``seconds``. A plain HTTP/1.1 client on asyncio streams (our server always sends
    Content-Length): a general client (httpx) spent about 6 ms of CPU per request here, a whole
    core at 32 clients, and set the pace instead of the server. A request still unanswered 30 s
    after the phase ends is cancelled and counted as an error."""
    import httpx

    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    shed: list[float] = []  # latency of the 503 answers (the bound refusing at once)
    errors: dict[str, int] = {}
    answered = 0
    deadline = time.perf_counter() + seconds

    def error(name: str) -> None:
        errors[name] = errors.get(name, 0) + 1

    async def client_loop(k: int) -> None:
        nonlocal answered
        i, reader, writer = k, None, None
        try:
            while time.perf_counter() < deadline:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
                request = requests[i % len(requests)]
                i += clients
                started = time.perf_counter()
                try:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head[9:12])
                    headers = head.lower()
                    length = int(headers.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                    await reader.readexactly(length)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                    error(type(exc).__name__)
                    writer.close()
                    reader = writer = None
                    continue
                if status == 200:
                    answered += 1
                    latencies.append(time.perf_counter() - started)
                elif status == 503 and b"retry-after:" in headers:
                    shed.append(time.perf_counter() - started)
                else:
                    error(str(status))
                if b"connection: close" in headers:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    started = time.perf_counter()
    tasks = [asyncio.ensure_future(client_loop(k)) for k in range(clients)]
    _, late = await asyncio.wait(tasks, timeout=seconds + 30.0)
    for task in late:
        task.cancel()
        error("no answer 30 s after the phase")
    elapsed = time.perf_counter() - started if not late else seconds + 30.0
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            error(type(task.exception()).__name__)
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        metrics = (await client.get("/metrics")).text
    return {
        "latencies": latencies,
        "shed": shed,
        "errors": errors,
        "answered": answered,
        "elapsed": elapsed,
        "metrics": metrics,
    }


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return float("nan")


def quantile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.quantile(np.asarray(values), q)) if values else float("nan")


def start_server(model_dir: Path, tmp: str, workers: int) -> tuple[subprocess.Popen, str, Path]:
    """``python -m serving`` on a free port, its output to a file (read, so it never blocks on a pipe)."""
    from components.common.params import SECTIONS

    serving = f"{{workers: {workers}}}" if workers != 1 else "{}"
    params = Path(tmp, "params.yaml")
    params.write_text("".join(f"{s}: {serving if s == 'serving' else '{}'}\n" for s in SECTIONS))
    log_uri, output = Path(tmp, "log"), Path(tmp, "server.out")
    with open(output, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--model", str(model_dir), "--log", str(log_uri), "--port", "0"]
            + ["--params", str(params)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        for line in output.read_text().splitlines():
            if line.startswith("serving: listening on "):
                return proc, line.split()[3], log_uri
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("bench: the server did not start:\n" + output.read_text()[-3000:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: see module doc)")
    parser.add_argument(
        "--workers", type=int, default=None, help="serving.workers (default: params' default)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="load phase length (seconds)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument(
        "--texts-per-request",
        type=int,
        default=1,
        help="texts in each POST /predict (1 = {'text'}; more = a {'texts'} batch, as a bulk client sends)",
    )
    parser.add_argument("--peer-seconds", type=float, default=8.0, help="time per peer measurement (seconds)")
    parser.add_argument(
        "--overload-clients", type=int, default=512, help="clients of the overload phase (0 = skip it)"
    )
    parser.add_argument(
        "--overload-seconds", type=float, default=15.0, help="overload phase length (seconds)"
    )
    args = parser.parse_args()

    import psutil

    from components.common.noise import hidden_summary, hide_library_noise
    from monitoring.window import read_window
    from serving.settings import Settings

    hide_library_noise()  # megatron's fallback warnings when the peer loads a GPT classifier
    model_dir, what = choose_model(args.model)
    workers = args.workers or Settings().workers
    settings = Settings(workers=workers)
    texts = review_texts()
    per_request = args.texts_per_request
    requests = request_bytes(texts, per_request)
    cores = len(os.sched_getaffinity(0))
    print(f"bench: model {model_dir} ({what})")
    print(
        f"bench: {len(texts)} review texts ; {cores} cores ; serving.cpu_threads {settings.cpu_threads} ; "
        f"serving.workers {workers} ; load average {os.getloadavg()[0]:.2f} before the run"
    )

    peer = peer_throughput(model_dir, texts, args.peer_seconds, settings.cpu_threads)
    for per_call, p in peer.items():
        print(
            f"peer   direct predict, {per_call:2d} texts/call: {p['rate']:8.1f} texts/s, "
            f"{p['per_cpu_s']:8.1f} texts per CPU-second ({p['cores']:.2f} cores busy)"
        )
    best_call = max(peer, key=lambda k: peer[k]["rate"])
    best = peer[best_call]

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        proc, url, log_uri = start_server(model_dir, tmp, workers)
        try:
            server = psutil.Process(proc.pid)
            asyncio.run(load(url, requests[:64], 4, 2.0))  # warm-up (not counted; logged)
            server_cpu, client_cpu, idle = cpu_seconds(server), time.process_time(), idle_seconds()
            result = asyncio.run(load(url, requests, args.clients, args.duration))
            server_cpu, client_cpu = cpu_seconds(server) - server_cpu, time.process_time() - client_cpu
            idle = idle_seconds() - idle
            # Requests answered before the counted phase: the warm-up's.
            warm = metric_value(result["metrics"], 'serving_requests_total{endpoint="/predict",status="200"}')
            warm_rows = (int(warm) - result["answered"]) * per_request
            phases = {}
            if args.overload_clients:
                rss = {"before": rss_bytes(server)}
                phases["overload"] = asyncio.run(
                    load(url, requests, args.overload_clients, args.overload_seconds)
                )
                rss["after burst"] = rss_bytes(server)
                phases["after"] = asyncio.run(load(url, requests, args.clients, min(args.duration, 10.0)))
                rss["recovered"] = rss_bytes(server)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        rows = len(
            read_window(
                str(log_uri), datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
            ).frame
        )

    if phases:
        over, after = phases["overload"], phases["after"]
        print(
            f"overload {args.overload_clients} clients x {over['elapsed']:.1f} s "
            f"(queue bound serving.max_queued_texts = {settings.max_queued_texts} per worker):"
        )
        print(
            f"  admitted          : {over['answered']} ({over['answered'] / over['elapsed']:.1f} req/s), latency p50 "
            f"{quantile(over['latencies'], 0.5) * 1000:.1f} ms, p99 {quantile(over['latencies'], 0.99) * 1000:.1f} ms"
        )
        print(
            f"  refused 503       : {len(over['shed'])} with Retry-After, latency p50 "
            f"{quantile(over['shed'], 0.5) * 1000:.1f} ms, p99 {quantile(over['shed'], 0.99) * 1000:.1f} ms; "
            f"other errors {over['errors'] or 0}"
        )
        print(
            "  server RSS        : "
            + ", ".join(f"{name} {value / 2**20:.0f} MiB" for name, value in rss.items())
            + (f" (all {workers} workers and the parent)" if workers > 1 else "")
        )
        print(
            f"  after the burst   : {args.clients} clients, {after['answered'] / after['elapsed']:.1f} req/s, p50 "
            f"{quantile(after['latencies'], 0.5) * 1000:.1f} ms, errors {after['errors'] or 0}"
        )
        print(
            f"ratio  admitted p50 under overload / p50 at {args.clients} clients: "
            f"{quantile(over['latencies'], 0.5) / quantile(result['latencies'], 0.5):.2f}"
        )
    answered_all = (result["answered"] + sum(p["answered"] for p in phases.values())) * per_request
    latencies, answered, elapsed = result["latencies"], result["answered"], result["elapsed"]
    rate = answered / elapsed  # requests/s
    throughput = rate * per_request  # texts/s
    batch_mean = metric_value(result["metrics"], "serving_batch_texts_sum") / metric_value(
        result["metrics"], "serving_batch_texts_count"
    )
    # The model's own throughput inside the server during the run (texts through forward passes /
    # seconds in forward passes), under exactly the load the run saw.
    model_only = metric_value(result["metrics"], "serving_batch_texts_sum") / metric_value(
        result["metrics"], "serving_compute_seconds_total"
    )
    p50 = quantile(latencies, 0.5)
    bound = args.clients / rate  # Little's law: N closed-loop clients, no think time
    machine = cores * elapsed
    others = max(machine - server_cpu - client_cpu - idle, 0.0)
    errors = sum(result["errors"].values())
    print(f"server {args.clients} clients x {elapsed:.1f} s on loopback ({workers} worker(s)):")
    print(
        f"  requests answered : {answered}  ({rate:.1f} req/s of {per_request} text(s): {throughput:.1f} texts/s)"
    )
    print(
        f"  latency (client)  : p50 {p50 * 1000:.1f} ms, p95 {quantile(latencies, 0.95) * 1000:.1f} ms, "
        f"p99 {quantile(latencies, 0.99) * 1000:.1f} ms"
    )
    print(f"  errors            : {errors} {result['errors'] or ''}")
    print(f"  mean micro-batch  : {batch_mean:.1f} texts per forward pass (whole run, warm-up included)")
    print(
        f"  logged rows       : {rows} = {answered_all} texts answered (all phases) + {warm_rows} warm-up -> "
        f"{'OK' if rows == answered_all + warm_rows else 'MISMATCH'}"
    )
    print(
        f"  model-only        : {model_only:.1f} texts/s inside the server's forward passes (same run)"
        + (f", per worker: {workers} run them side by side" if workers > 1 else "")
    )
    print(
        f"  CPU over the phase: server {server_cpu:.1f} s ({server_cpu / machine:.0%} of {cores} cores), "
        f"load client {client_cpu:.1f} s ({client_cpu / machine:.0%}), "
        f"other processes {others:.1f} s ({others / machine:.0%}), idle {idle:.1f} s ({idle / machine:.0%})"
    )
    print(f"  per CPU-second    : {throughput * elapsed / server_cpu:.1f} texts per server CPU-second")
    print(
        f"ratio  server / best offline ({best_call} texts/call, same run): {throughput / best['rate']:.2f}"
        "  (goal >= 0.9; the server shared the cores with the client, the peer had them)"
    )
    print(
        f"ratio  the same per CPU-second (server texts/CPU-s / offline texts/CPU-s): "
        f"{throughput * elapsed / server_cpu / best['per_cpu_s']:.2f}  (the client's share taken out)"
    )
    print(
        f"ratio  p50 / queueing bound {args.clients} clients / {rate:.1f} req/s = {bound * 1000:.1f} ms: "
        f"{p50 / bound:.2f}  (goal <= 1.2)"
    )
    print(
        f"ratio  server / (model-only x workers) in the same run: {throughput / (model_only * workers):.2f}"
    )
    print(f"ratio  server / direct 1 text/call: {throughput / peer[1]['rate']:.2f}")
    if hidden_summary():
        print(f"bench: {hidden_summary()}")
    return 0 if errors == 0 and rows == answered_all + warm_rows else 1


if __name__ == "__main__":
    sys.exit(main())
