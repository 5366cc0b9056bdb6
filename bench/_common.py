"""Helpers shared by the clean/dedup benchmarks: the news sample as documents, synthetic corpora,
running a command while sampling the peak memory of its process tree, and the datatrove peer venv.

Benchmarks are not tests: they print figures and ratios against a peer measured in the same run.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEWS_CSV = ROOT / "data" / "raw" / "news_articles.csv"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def news_documents(path: Path = NEWS_CSV) -> list[dict]:
    """The news sample as ``{id, text, source}`` (title, subtitle and body as paragraphs), in file order."""
    if not path.exists():
        sys.exit(f"bench: {path} is missing; run `make samples` first")
    csv.field_size_limit(1 << 30)
    docs = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            body = (row.get("text") or "").strip()
            if not body:
                continue
            parts = [(row.get("title") or "").strip(), (row.get("subtitle") or "").strip(), body]
            docs.append(
                {"id": f"news:{int(row['article_id']):06d}", "text": "\n\n".join(p for p in parts if p), "source": "news"}
            )
    return docs


def write_jsonl(path: Path, docs: Iterable[dict]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            n += 1
    return n


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def sentence_pool(docs: Sequence[dict]) -> list[str]:
    """Sentences of the news bodies (20 to 400 characters), in corpus order."""
    pool = []
    for doc in docs:
        for sentence in _SENTENCE.split(doc["text"].split("\n\n")[-1]):
            if 20 <= len(sentence) <= 400:
                pool.append(sentence.strip())
    return pool


def synthetic_documents(n: int, pool: Sequence[str], seed: int = 0) -> Iterable[dict]:
    """``n`` news-like documents of random pool sentences: a short title line and 2-4 paragraphs,
    about 3.5 kB each like the news sample. Sentences are drawn independently, so documents are
    distinct (not near-duplicates of each other)."""
    import random

    rng = random.Random(seed)
    for i in range(n):
        title = " ".join(rng.choice(pool).split()[:8]).rstrip(".,;:")
        paragraphs = []
        for _ in range(rng.randint(2, 4)):
            paragraphs.append(" ".join(rng.choice(pool) for _ in range(rng.randint(5, 11))))
        yield {"id": f"syn:{i:07d}", "text": "\n\n".join([title, *paragraphs]), "source": "synthetic"}


def params_file(path: Path, clean: dict) -> Path:
    """A params.yaml with every stage section (defaults) and the given clean overrides."""
    import yaml

    from components.common.params import STAGES

    data = {stage: {} for stage in STAGES}
    data["clean"] = clean
    path.write_text(yaml.safe_dump(data))
    return path


def run_measured(cmd: Sequence[str], env: dict | None = None, cwd: Path = ROOT) -> tuple[float, int, str]:
    """Run ``cmd``; return ``(wall seconds, peak RSS of the process tree in bytes, output tail)``.

    RSS is sampled every 50 ms over the process and all its descendants (psutil), so short peaks
    between samples can be missed; the figure is a lower bound of the true peak.
    """
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                break
            peak = max(peak, total)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    text = out.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"bench: {' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{text[-4000:]}")
    return seconds, peak, text[-2000:]


# --- the datatrove peer ---------------------------------------------------------------------------

DATATROVE_VENV = ROOT / ".cache" / "bench-venvs" / "datatrove"
# Pinned so the peer is the same on every machine (datatrove 0.10.1 with the versions checked here;
# xxhash 4 breaks its MinHash). Installed with pip into its own venv, never into .venv.
DATATROVE_PINS = (
    "datatrove==0.10.1",
    "orjson==3.13.0",
    "spacy==3.8.18",
    "regex==2026.11.19",
    "tokenizers==0.23.3",
    "xxhash==3.8.2",
    "numpy==2.4.6",
    "fsspec==2026.9.0",
    "huggingface_hub==2.4.0",
    "loguru==0.7.3",
    "multiprocess==0.70.19",
    "dill==0.4.1",
    "humanize==4.17.0",
    "tqdm==4.70.1",
    "pydantic==2.14.4",
    "thinc==8.3.14",
    "blis==1.3.4",
    "srsly==2.5.6",
    "cymem==2.0.16",
    "preshed==3.0.15",
    "murmurhash==1.0.16",
)


def datatrove_python() -> Path:
    """The peer venv's python, created on first use (pip only; about 1 minute and 400 MB)."""
    py = DATATROVE_VENV / "bin" / "python"
    stamp = DATATROVE_VENV / ".installed"
    if stamp.exists() and stamp.read_text().strip() == " ".join(DATATROVE_PINS):
        return py
    print(f"bench: creating the datatrove peer venv at {DATATROVE_VENV} (first use only) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(DATATROVE_VENV)], check=True)
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *DATATROVE_PINS],
        check=True,
    )
    stamp.write_text(" ".join(DATATROVE_PINS) + "\n")
    return py
