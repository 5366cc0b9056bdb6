"""Bounded load test of the model server on loopback, with the model's own throughput as the peer.

    .venv/bin/python bench/serve_load.py [--model DIR] [--duration 60] [--clients 32]

1. Peer, in this process: the classifier's direct ``predict`` on review texts, one text per call
   (what a server without batching does) and 32 texts per call (the best batching can do), each
   after an equally long warm-up.
2. The server (``python -m serving``) as a subprocess on 127.0.0.1, a free port, ``serving``
   defaults; ``--clients`` concurrent clients (asyncio + httpx), each sending one review per
   request back to back, for ``--duration`` seconds; then SIGTERM.
3. Overload (``--overload-clients``, default 512, for ``--overload-seconds``): far more clients
   than the server serves; figures for the admitted requests (latency against the normal phase's)
   and the 503 refusals (with Retry-After; how fast they come), the server's RSS before, after the
   burst and after a recovery phase at ``--clients``.
4. Figures: requests/s, p50/p95/p99 client-side latency, errors (goal 0), mean micro-batch size
   and the model-only throughput inside the server (texts / forward-pass seconds, from /metrics:
   a peer measured under the very same load), and the prediction log's rows after shutdown
   against the requests answered (goal: equal). Ratios against the peers.

The model: ``--model DIR`` if given; else ``outputs/finetune`` when it holds a classifier; else a
classifier of the CPU demo's exact shape (pretrain defaults: 4 layers, width 256, seq 256;
finetune max_length 64; an 8k BPE tokenizer trained on the review sample) with untrained weights,
built once into .cache/bench/model: the same compute as the trained demo model. The client and
the server share the machine's cores, so the figures are a lower bound for the server alone.
Nothing leaves loopback; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
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


def choose_model(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    finetuned = ROOT / "outputs" / "finetune"
    if (finetuned / "classifier.json").exists() and (finetuned / "model.safetensors").exists():
        return finetuned
    return demo_model_dir()


def peer_throughput(model_dir: Path, texts: list[str], seconds: float, threads: int) -> dict[str, float]:
    """Texts/s of the model's direct predict: one text per call, and 32 per call."""
    from llm.served import load_model

    model = load_model(model_dir, batch_size=64, cpu_threads=threads)
    out = {}
    for per_call in (1, 32):
        # Warm-up, not counted: the first forward pass of each new (batch, length) shape builds
        # its CPU kernels, which would make a short measurement several times too slow.
        for counted in (False, True):
            done, i, started = 0, 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                model.predict(texts[i : i + per_call])
                done += per_call
                i = (i + per_call) % (len(texts) - per_call)
            if counted:
                out[per_call] = done / (time.perf_counter() - started)
    return out


async def load(url: str, texts: list[str], clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    shed: list[float] = []  # latency of the 503 answers (the bound refusing at once)
    errors: dict[str, int] = {}
    answered = 0
    deadline = time.perf_counter() + seconds

    async def client_loop(k: int, client: httpx.AsyncClient) -> None:
        nonlocal answered
        i = k
        while time.perf_counter() < deadline:
            text = texts[i % len(texts)]
            i += clients
            started = time.perf_counter()
            try:
                response = await client.post("/predict", json={"text": text})
                if response.status_code == 200:
                    answered += 1
                    latencies.append(time.perf_counter() - started)
                elif response.status_code == 503 and "retry-after" in response.headers:
                    shed.append(time.perf_counter() - started)
                else:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(k, client) for k in range(clients)))
        elapsed = time.perf_counter() - started
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="classifier folder (default: see module doc)")
    parser.add_argument("--duration", type=float, default=60.0, help="load phase length (seconds)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--peer-seconds", type=float, default=8.0, help="time per peer measurement (seconds)")
    parser.add_argument(
        "--overload-clients", type=int, default=512, help="clients of the overload phase (0 = skip it)"
    )
    parser.add_argument(
        "--overload-seconds", type=float, default=15.0, help="overload phase length (seconds)"
    )
    args = parser.parse_args()

    from components.common.params import SECTIONS
    from monitoring.window import read_window
    from serving.settings import Settings

    model_dir = choose_model(args.model)
    texts = review_texts()
    threads = Settings().cpu_threads
    print(
        f"bench: model {model_dir} ; {len(texts)} review texts ; {os.cpu_count()} cores ; torch threads {threads}"
    )

    peer = peer_throughput(model_dir, texts, args.peer_seconds, threads)
    print(f"peer   direct predict, 1 text/call : {peer[1]:8.1f} texts/s")
    print(f"peer   direct predict, 32 texts/call: {peer[32]:8.1f} texts/s")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        params = Path(tmp, "params.yaml")
        params.write_text("".join(f"{stage}: {{}}\n" for stage in SECTIONS))
        log_uri = Path(tmp, "log")
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--model", str(model_dir), "--log", str(log_uri), "--port", "0"]
            + ["--params", str(params)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        url = None
        try:
            for line in proc.stdout:
                if line.startswith("serving: listening on "):
                    url = line.split()[3]
                    break
            if url is None:
                raise SystemExit("bench: the server did not start")
            import psutil

            server = psutil.Process(proc.pid)
            asyncio.run(load(url, texts[:64], 4, 2.0))  # warm-up (not counted; logged)
            result = asyncio.run(load(url, texts, args.clients, args.duration))
            warm_rows = (
                int(
                    metric_value(
                        result["metrics"], 'serving_requests_total{endpoint="/predict",status="200"}'
                    )
                )
                - result["answered"]
            )
            phases = {}
            if args.overload_clients:
                rss = {"before": server.memory_info().rss}
                phases["overload"] = asyncio.run(
                    load(url, texts, args.overload_clients, args.overload_seconds)
                )
                rss["after burst"] = server.memory_info().rss
                phases["after"] = asyncio.run(load(url, texts, args.clients, min(args.duration, 10.0)))
                rss["recovered"] = server.memory_info().rss
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=120)
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
            f"(queue bound serving.max_queued_texts = {Settings().max_queued_texts}):"
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
        )
        print(
            f"  after the burst   : {args.clients} clients, {after['answered'] / after['elapsed']:.1f} req/s, p50 "
            f"{quantile(after['latencies'], 0.5) * 1000:.1f} ms, errors {after['errors'] or 0}"
        )
        print(
            f"ratio  admitted p50 under overload / p50 at {args.clients} clients: "
            f"{quantile(over['latencies'], 0.5) / quantile(result['latencies'], 0.5):.2f}"
        )
    answered_all = result["answered"] + sum(p["answered"] for p in phases.values())
    latencies, answered, elapsed = result["latencies"], result["answered"], result["elapsed"]
    throughput = answered / elapsed
    batch_mean = metric_value(result["metrics"], "serving_batch_texts_sum") / metric_value(
        result["metrics"], "serving_batch_texts_count"
    )
    # Same-run peer: the model's own throughput inside the server during the run (texts through
    # forward passes / seconds in forward passes), measured under exactly the load the run saw.
    model_only = metric_value(result["metrics"], "serving_batch_texts_sum") / metric_value(
        result["metrics"], "serving_compute_seconds_total"
    )
    errors = sum(result["errors"].values())
    print(f"server {args.clients} clients x {elapsed:.1f} s on loopback:")
    print(f"  requests answered : {answered}  ({throughput:.1f} req/s)")
    print(
        f"  latency (client)  : p50 {quantile(latencies, 0.5) * 1000:.1f} ms, p95 {quantile(latencies, 0.95) * 1000:.1f} ms, "
        f"p99 {quantile(latencies, 0.99) * 1000:.1f} ms"
    )
    print(f"  errors            : {errors} {result['errors'] or ''}")
    print(f"  mean micro-batch  : {batch_mean:.1f} texts per forward pass (whole run, warm-up included)")
    print(
        f"  logged rows       : {rows} = {answered_all} answered (all phases) + {warm_rows} warm-up -> "
        f"{'OK' if rows == answered_all + warm_rows else 'MISMATCH'}"
    )
    print(f"  model-only        : {model_only:.1f} texts/s inside the server's forward passes (same run)")
    print(f"ratio  server / model-only in the same run: {throughput / model_only:.2f}")
    print(f"ratio  server / direct 1 text/call  : {throughput / peer[1]:.2f}")
    print(f"ratio  server / direct 32 texts/call: {throughput / peer[32]:.2f}")
    return 0 if errors == 0 and rows == answered_all + warm_rows else 1


if __name__ == "__main__":
    sys.exit(main())
