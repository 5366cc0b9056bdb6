"""Batched vs one-at-a-time serving of concurrent POST /generate requests, on loopback.

    .venv/bin/python bench/serve_generate.py [--generator DIR] [--clients 16] [--requests 2] [--new-tokens 32]

The same server code (``python -m serving --generator DIR``, a subprocess on 127.0.0.1), the same
prompts, the same run, twice: ``serving.generate_batch_prompts`` = ``--clients`` (concurrent
greedy requests share one batched decode) and = 1 (one decode per request, what a server without
batching does). Each time ``--clients`` concurrent clients (asyncio + httpx) send ``--requests``
greedy requests each, one review snippet per request, ``max_new_tokens`` = ``--new-tokens``; one
warm-up request first, not counted. Figures: generated tokens/s (tokens the responses report,
end tokens included, over the phase's wall clock), requests/s, p50/p95 client latency, mean
time to first token, decodes run (/metrics ``serving_generate_calls_total``), errors; then the
ratio batched / one at a time, and how many greedy texts the two phases agree on (left padding in
a batch changes only the floating-point summation order).

The generator: ``--generator DIR`` if given; else a generator folder of the CPU demo's shape
(params.yaml pretrain.model: 4 layers, width 256, 4 heads, ffn 1024, seq 256; a BPE tokenizer of
tokenize.vocab_size trained on the review sample) with random-init weights, built once into
.cache/bench/generator: the demo's compute, not its text. ``stop`` is empty, so generations run
to ``--new-tokens`` unless the model emits its end token. The server's /predict classifier is a
tiny one (tests.serving_fixtures), idle here. Clients and server share the cores.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH_GENERATOR = ROOT / ".cache" / "bench" / "generator"


def demo_generator_dir() -> Path:
    """A generator folder of the CPU demo's shape with random-init weights (built once)."""
    from llm.formats import TOKENIZER_FILE
    from llm.generator import write_generator_config

    if (BENCH_GENERATOR / "generator.json").exists():
        return BENCH_GENERATOR
    import shutil

    import torch

    from bench.serve_load import review_texts
    from components.pretrain.params import Params as PretrainParams
    from components.tokenize.core import train_tokenizer
    from components.tokenize.params import Params as TokenizeParams
    from llm.gpt import CHECKPOINT_DIR, MODEL_FILE, GPTShape, build_gpt, megatron_runtime, save_checkpoint

    print("bench: building a demo-shaped generator (random init) into", BENCH_GENERATOR.relative_to(ROOT))
    tokenizer = train_tokenizer(review_texts(), TokenizeParams().vocab_size)
    pretrain = PretrainParams()
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
    tmp = BENCH_GENERATOR.with_name("generator.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with megatron_runtime(seed=0):
        torch.manual_seed(0)
        save_checkpoint(build_gpt(shape), tmp / CHECKPOINT_DIR)
    shape.to_json(tmp / MODEL_FILE)
    (tmp / TOKENIZER_FILE).write_text(tokenizer.to_str() + "\n")
    write_generator_config(tmp, task="qa", max_new_tokens=32, stop=[])
    shutil.rmtree(BENCH_GENERATOR, ignore_errors=True)
    tmp.rename(BENCH_GENERATOR)
    return BENCH_GENERATOR


def start_server(model: Path, generator: Path, params: Path, log: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "serving", "--model", str(model), "--generator", str(generator)]
    cmd += ["--log", str(log), "--port", "0", "--params", str(params)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("serving: listening on "):
            return proc, line.split()[3]
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit("bench: server did not start:\n" + "".join(lines[-30:]))


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def phase(url: str, prompts: list[str], clients: int, per_client: int, new_tokens: int) -> dict:
    import httpx

    results: dict[int, dict] = {}
    latencies: list[float] = []
    errors = 0

    async with httpx.AsyncClient(base_url=url, timeout=300.0) as client:
        await client.post("/generate", json={"prompt": prompts[0], "max_new_tokens": new_tokens})  # warm-up

        async def one(k: int) -> None:
            nonlocal errors
            for j in range(per_client):
                i = k * per_client + j
                t0 = time.perf_counter()
                r = await client.post("/generate", json={"prompt": prompts[i], "max_new_tokens": new_tokens})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1
                    continue
                results[i] = r.json()

        before = await client.get("/metrics")
        started = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(clients)))
        seconds = time.perf_counter() - started
        after = await client.get("/metrics")

    def calls(text: str) -> float:
        return next(
            float(x.split()[-1]) for x in text.splitlines() if x.startswith("serving_generate_calls_total")
        )

    tokens = sum(
        g["tokens_out"] + (g["finish_reason"] == "eos")
        for body in results.values()
        for g in body["generations"]
    )
    return {
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "requests_per_s": len(results) / seconds,
        "p50_ms": quantile(latencies, 0.5) * 1000,
        "p95_ms": quantile(latencies, 0.95) * 1000,
        "ttft_ms": sum(b["ttft_ms"] for b in results.values()) / max(len(results), 1),
        "decodes": calls(after.text) - calls(before.text),
        "errors": errors,
        "texts": {i: b["generations"][0]["text"] for i, b in results.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default=None, help="generator folder (default: a demo-shaped one)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()

    from bench.serve_load import review_texts
    from tests.serving_fixtures import make_model_dir
    from tests.task_fixtures import write_params

    generator = Path(args.generator) if args.generator else demo_generator_dir()
    n = args.clients * args.requests
    prompts = [t[:300] for t in review_texts(n)]
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model_dir(Path(tmp) / "model")  # /predict's classifier: tiny, not measured here
        print(f"bench: uptime: {os.popen('uptime').read().strip()}")
        for name, batch in (("batched", args.clients), ("one at a time", 1)):
            params = write_params(
                Path(tmp) / f"params-{batch}.yaml",
                serving={"generate_batch_prompts": batch, "generate_batch_wait_ms": 5.0},
            )
            proc, url = start_server(model, generator, params, Path(tmp) / f"log-{batch}")
            try:
                figures[name] = asyncio.run(phase(url, prompts, args.clients, args.requests, args.new_tokens))
            finally:
                stop_server(proc)
            f = figures[name]
            print(
                f"{name:>14}: {f['tokens_per_s']:8.1f} generated tokens/s, {f['requests_per_s']:6.2f} req/s, "
                f"p50 {f['p50_ms']:7.0f} ms, p95 {f['p95_ms']:7.0f} ms, mean ttft {f['ttft_ms']:7.0f} ms, "
                f"{f['decodes']:.0f} decodes for {n} requests, {f['tokens']} tokens in {f['seconds']:.1f} s, "
                f"{f['errors']} errors",
                flush=True,
            )
    a, b = figures["batched"], figures["one at a time"]
    same = sum(a["texts"].get(i) == b["texts"].get(i) for i in range(n))
    print(f"ratio batched / one at a time: {a['tokens_per_s'] / b['tokens_per_s']:.2f}x generated tokens/s")
    print(f"greedy texts equal across the two phases: {same}/{n}")
    print(f"bench: uptime: {os.popen('uptime').read().strip()}")
    return 0 if a["errors"] == b["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
