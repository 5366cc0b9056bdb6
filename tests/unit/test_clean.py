"""clean: drop and reject reasons, idempotent normalization, exact dedup, the accounting invariant."""

from __future__ import annotations

import gzip
import hashlib
import json
import unicodedata
from pathlib import Path

import pytest

from components.clean import filters
from components.clean.core import AccountingError, make_report, run
from components.clean.params import Params
from components.common.params import ParamsError, from_dict

SMALL = from_dict(Params, {"min_chars": 10, "max_chars": 60, "min_words": 3}, "clean")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


# --- pure helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  a\tb  c ", "a b c"),
        ("a\r\nb\rc", "a\nb\nc"),
        ("a\x00b\x07c\x1b\x7f\x9f", "abc"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("no\u00a0break\u2003em", "no break em"),
        ("para one \n\n\n\n para two", "para one\n\npara two"),
        ("line\u2028sep\x0cfeed", "line\nsep\nfeed"),
        ("lone \ud800surrogate", "lone surrogate"),
        ("Cafe\u0301", "Caf\u00e9"),  # NFC composes
    ],
)
def test_normalize_text_cleans(raw: str, clean: str) -> None:
    assert filters.normalize_text(raw, "NFC") == clean


TRICKY = [
    "  a\tb  c \r\n\r\n\r\n d ",
    "x \u00a8 y",  # NFKC: U+00A8 -> space + combining diaeresis
    "\ufb01ne \u2474 \u3000full\uff21",  # ligature, parenthesized digit, ideographic space
    "e\x00\u0301 and \u1e9b\u0323",  # a control between base and combining mark
    "\n\u2029 \u0085 lead and trail \u2003",
    "\u212b \u2126 \u00c5",
]


@pytest.mark.parametrize("form", ["NFC", "NFKC", "NFD", "NFKD"])
def test_normalize_text_is_idempotent(form: str) -> None:
    for text in TRICKY:
        once = filters.normalize_text(text, form)
        assert filters.normalize_text(once, form) == once
        assert unicodedata.is_normalized(form, once)


def test_nfkc_folds_compatibility_characters() -> None:
    assert filters.normalize_text("\ufb01ne \uff21", "NFKC") == "fine A"
    assert filters.normalize_text("\ufb01ne", "NFC") == "\ufb01ne"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("tiny", "too_short"),
        ("x" * 61, "too_long"),
        ("two words!", "too_few_words"),
        ("three short words", None),
    ],
)
def test_length_filter_reasons(text: str, reason: str | None) -> None:
    assert filters.length_filter(text, SMALL) == reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"id": "a", "text": "ok"', "invalid_json"),
        (b'{"id": "a", "text": "caf\xe9"}', "invalid_utf8"),
        (b"[1, 2]", "not_an_object"),
        (b'{"text": "no id"}', "missing_id"),
        (b'{"id": "", "text": "empty id"}', "missing_id"),
        (b'{"id": "a"}', "missing_text"),
        (b'{"id": "a", "text": null}', "missing_text"),
        (b'{"id": "a", "text": ["x"]}', "non_string_text"),
        (b'{"id": "a", "text": " \\n "}', "empty_text"),
        (b'{"id": "\\ud800", "text": "t"}', "invalid_unicode"),
    ],
)
def test_parse_line_reject_reasons(raw: bytes, reason: str) -> None:
    assert filters.parse_line(raw) == (None, reason)
    assert reason in filters.REJECT_REASONS


def test_parse_line_moves_extra_keys_into_meta() -> None:
    record, reason = filters.parse_line(b'{"id": 7, "text": "t", "meta": {"a": 1}, "lang": "en"}')
    assert reason is None
    assert record == {"id": "7", "text": "t", "source": "", "meta": {"a": 1, "lang": "en"}}


# --- the Beam pipeline ----------------------------------------------------------------------------


def _doc(doc_id: str, text: str) -> str:
    return json.dumps({"id": doc_id, "text": text, "source": "s", "meta": {"k": doc_id}})


GOOD = "a perfectly fine document"  # 25 chars, 4 words


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    lines = [
        _doc("d3", GOOD).encode(),
        _doc("d1", "  a  perfectly\tfine document\n").encode(),  # same text after cleanup: d1 kept
        _doc("d2", "another fine document here").encode(),
        b"",  # blank: not an input record
        b"{broken json",
        b'{"id": "bad-utf8", "text": "caf\xe9 au lait ok"}',
        json.dumps({"id": "e", "text": "   "}).encode(),
        json.dumps({"id": "n", "text": 12345}).encode(),
        _doc("short", "tiny").encode(),
        _doc("long", "word " * 20).encode(),
        _doc("few", "twowords onlyhere").encode(),
        _doc("d2", "a different text, same id as d2").encode(),
    ]
    path = tmp_path / "in" / "corpus.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_pipeline_reasons_and_accounting(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    metrics = run(str(corpus), out, SMALL)
    report = json.loads((out / "report.json").read_text())
    assert report == {
        "input": 11,
        "kept": 2,
        "dropped": {"duplicate_exact": 1, "too_few_words": 1, "too_long": 1, "too_short": 1},
        "rejected": {
            "duplicate_id": 1,
            "empty_text": 1,
            "invalid_json": 1,
            "invalid_utf8": 1,
            "non_string_text": 1,
        },
    }
    assert report["input"] == report["kept"] + sum(report["dropped"].values()) + sum(
        report["rejected"].values()
    )
    assert metrics["kept_by_source"] == {"s": 2}

    (part,) = sorted((out / "documents").iterdir())
    assert part.name == "part-00000-of-00001.jsonl"
    docs = _jsonl(part)
    assert docs == [
        {"id": "d1", "text": GOOD, "source": "s", "meta": {"k": "d1"}},
        {"id": "d2", "text": "another fine document here", "source": "s", "meta": {"k": "d2"}},
    ]
    (dup,) = _jsonl(out / "dropped" / "duplicate_exact.jsonl")
    assert (dup["id"], dup["duplicate_of"], dup["reason"]) == ("d3", "d1", "duplicate_exact")
    assert [d["id"] for d in _jsonl(out / "dropped" / "too_short.jsonl")] == ["short"]

    rejected = _jsonl(out / "rejected" / "rejected.jsonl")
    assert [(r["location"], r["reason"]) for r in rejected] == [
        ("corpus.jsonl:5", "invalid_json"),
        ("corpus.jsonl:6", "invalid_utf8"),
        ("corpus.jsonl:7", "empty_text"),
        ("corpus.jsonl:8", "non_string_text"),
        ("corpus.jsonl:12", "duplicate_id"),
    ]
    assert rejected[-1]["duplicate_of"] == "corpus.jsonl:3"  # the first d2 (by line) is kept

    # Byte-identical rerun.
    run(str(corpus), tmp_path / "again", SMALL)
    assert _digest(out) == _digest(tmp_path / "again")


def test_folder_input_shards_and_gzip(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    texts = [f"document number {i} has enough words" for i in range(12)]
    (src / "a.jsonl").write_text("\n".join(_doc(f"a{i:02d}", t) for i, t in enumerate(texts[:6])) + "\n")
    with gzip.open(src / "sub" / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(_doc(f"b{i:02d}", t) for i, t in enumerate(texts[6:])) + "\n{oops\n")
    (src / "ignored.txt").write_text("not jsonl")
    params = from_dict(Params, {"min_chars": 10, "min_words": 3, "num_shards": 3}, "clean")
    report = run(str(src), tmp_path / "out", params)
    assert (report["input"], report["kept"], report["rejected"]) == (13, 12, {"invalid_json": 1})
    parts = sorted((tmp_path / "out" / "documents").iterdir())
    assert [p.name for p in parts] == [f"part-{s:05d}-of-00003.jsonl" for s in range(3)]
    ids = []
    for p in parts:
        shard_ids = [d["id"] for d in _jsonl(p)]
        assert shard_ids == sorted(shard_ids)
        ids += shard_ids
    assert sorted(ids) == [f"a{i:02d}" for i in range(6)] + [f"b{i:02d}" for i in range(6)]
    (bad,) = _jsonl(tmp_path / "out" / "rejected" / "rejected.jsonl")
    assert bad["location"] == "sub/b.jsonl.gz:7"


def test_report_refuses_counts_that_do_not_add_up(tmp_path: Path) -> None:
    work = tmp_path / "w"
    for sub in ("documents", "dropped", "rejected"):
        (work / sub).mkdir(parents=True)
    (work / "documents" / "part-00000-of-00001.jsonl").write_text(_doc("a", GOOD) + "\n")
    (work / "rejected" / "rejected.jsonl").write_text("")
    (work / ".input_count").write_text("2\n")
    with pytest.raises(AccountingError, match="input 2 != kept"):
        make_report(work)


def test_no_input_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run(str(tmp_path), tmp_path / "out", SMALL)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"min_chars": "ten"}, "clean.min_chars"),
        ({"max_chars": 5, "min_chars": 10}, "clean.max_chars"),
        ({"normalization": "NFX"}, "clean.normalization"),
        ({"num_shards": 0}, "clean.num_shards"),
        ({"pipeline_options": ["--runner=DirectRunner"]}, "clean.pipeline_options"),
        ({"pipeline_options": "--x"}, "clean.pipeline_options"),
        ({"min_word": 3}, "clean.min_word"),
    ],
)
def test_bad_params_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ParamsError, match=f"^{key}"):
        from_dict(Params, data, "clean")
