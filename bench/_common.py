"""Helpers shared by the clean/dedup benchmarks: the news sample as documents, synthetic corpora,
running a command while sampling the peak memory of its process tree, and the datatrove peer venv.

Benchmarks are not tests: they print figures and ratios against a peer measured in the same run.
"""

from __future__ import annotations

import contextlib
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
                {
                    "id": f"news:{int(row['article_id']):06d}",
                    "text": "\n\n".join(p for p in parts if p),
                    "source": "news",
                }
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


def clean_command(
    input_path: Path, output: Path, clean: dict, decontaminate: Path | None = None
) -> list[str]:
    """The command that runs the clean stage (``components.clean.core.run``, what the CLI calls) in
    a fresh process, with the ``clean`` params section given as a dict (the other stages' sections
    play no part)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "run-clean",
        str(input_path),
        str(output),
        json.dumps(clean),
    ]
    return cmd + ([str(decontaminate)] if decontaminate else [])


def _run_clean(argv: list[str]) -> None:
    import logging

    from components.clean.core import run
    from components.clean.params import Params
    from components.common.params import from_dict

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    input_path, output, clean = argv[0], argv[1], json.loads(argv[2])
    run(
        input_path,
        output,
        from_dict(Params, clean, "clean"),
        decontaminate=argv[3] if len(argv) > 3 else None,
    )


def run_measured(cmd: Sequence[str], env: dict | None = None, cwd: Path = ROOT) -> tuple[float, int, str]:
    """Run ``cmd``; return ``(wall seconds, peak RSS of the process tree in bytes, output tail)``.

    RSS is sampled every 50 ms over the process and all its descendants (psutil), so short peaks
    between samples can be missed; the figure is a lower bound of the true peak.
    """
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
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
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += p.memory_info().rss
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
# The whole resolved set, pinned, so the peer is the same on every machine (datatrove 0.10.1 with
# spaCy for English words; xxhash 4 breaks its MinHash). Installed with pip into its own venv, never
# into .venv.
DATATROVE_PINS = (
    "annotated-doc==0.0.7",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "blis==1.3.4",
    "catalogue==2.0.10",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "click==8.5.1",
    "cloudpathlib==0.26.0",
    "confection==1.3.4",
    "cymem==2.0.16",
    "datatrove==0.10.1",
    "dill==0.4.1",
    "filelock==4.3.1",
    "fsspec==2026.9.0",
    "h11==0.16.0",
    "hf-xet==1.8.0",
    "httpcore==1.0.9",
    "httpcore2==2.16.2",
    "httpx==0.28.1",
    "httpx2==2.16.2",
    "huggingface_hub==2.4.0",
    "humanize==4.17.0",
    "idna==3.20",
    "Jinja2==3.1.6",
    "loguru==0.7.3",
    "markdown-it-py==4.3.0",
    "MarkupSafe==3.0.4",
    "mdurl==0.1.2",
    "multiprocess==0.70.19",
    "murmurhash==1.0.16",
    "numpy==2.4.6",
    "orjson==3.13.0",
    "packaging==26.4",
    "preshed==3.0.15",
    "pydantic==2.14.4",
    "pydantic_core==2.50.5",
    "Pygments==2.21.0",
    "PyYAML==6.0.4",
    "regex==2026.11.19",
    "requests==2.34.2",
    "rich==15.0.0",
    "shellingham==1.5.4",
    "smart_open==9.0.2",
    "spacy==3.8.18",
    "spacy-legacy==3.0.12",
    "spacy-loggers==1.0.5",
    "srsly==2.5.6",
    "thinc==8.3.14",
    "tokenizers==0.23.3",
    "tqdm==4.70.1",
    "truststore==0.10.5",
    "typer==0.29.2",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
    "urllib3==2.8.0",
    "wasabi==1.1.3",
    "weasel==1.0.1",
    "wrapt==2.5.2",
    "xxhash==3.8.2",
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


if __name__ == "__main__" and sys.argv[1:2] == ["run-clean"]:
    _run_clean(sys.argv[2:])
