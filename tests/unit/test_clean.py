"""clean: the Beam pipeline on tiny fixtures: reasons, accounting (also on fuzzed input), clusters,
annotations, decontamination, reports and byte-identical reruns; plus normalization helpers."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import unicodedata
import zlib
from pathlib import Path

import pytest

from components.clean import filters, quality
from components.clean.core import AccountingError, make_report, run
from components.clean.params import Params
from components.common.entry import InputError
from components.common.params import ParamsError, from_dict
from tests.unit.test_clean_rules import prose

# The length and exact-dedup rules only: what the first version of the stage did.
BASIC = {
    "denoise": {"boilerplate_min_docs": 0},
    "language": {"enabled": False},
    "gopher_quality": {"enabled": False},
    "gopher_repetition": {"enabled": False},
    "c4": {"enabled": False},
    "fineweb": {"enabled": False},
    "outliers": {"enabled": False},
    "dedup": {"near": False},
    "pii": {"enabled": False},
}
SMALL = from_dict(Params, {**BASIC, "min_chars": 10, "max_chars": 60, "min_words": 3}, "clean")
COUNTS = ("input", "kept", "dropped", "rejected")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _counts(report: dict) -> dict:
    return {k: report[k] for k in COUNTS}


def _balanced(report: dict) -> bool:
    return report["input"] == report["kept"] + sum(report["dropped"].values()) + sum(
        report["rejected"].values()
    )


# --- normalization helpers ------------------------------------------------------------------------


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
        ("non\ufdd0char\uffff", "nonchar"),
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


# --- the Beam pipeline: basic rules ---------------------------------------------------------------


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
    assert _counts(report) == {
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
    assert _balanced(report)
    assert metrics["kept_by_source"] == {"s": 2}
    assert report["counters"]["input"] == 11 and report["counters"]["kept"] == 2

    (part,) = sorted((out / "documents").iterdir())
    assert part.name == "part-00000-of-00001.jsonl"
    docs = _jsonl(part)
    assert [(d["id"], d["text"], d["source"]) for d in docs] == [
        ("d1", GOOD, "s"),
        ("d2", "another fine document here", "s"),
    ]
    assert docs[0]["meta"]["k"] == "d1" and docs[0]["meta"]["clean"]["dedup"] == {
        "cluster": "d1",
        "cluster_size": 1,
    }
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
    assert sorted(p.name for p in out.iterdir()) == [
        "documents", "dropped", "metrics.json", "rejected", "report.json", "report.md",
    ]  # fmt: skip


def test_folder_input_shards_and_gzip(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    texts = [f"document number {i} has enough words" for i in range(12)]
    (src / "a.jsonl").write_text("\n".join(_doc(f"a{i:02d}", t) for i, t in enumerate(texts[:6])) + "\n")
    with gzip.open(src / "sub" / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(_doc(f"b{i:02d}", t) for i, t in enumerate(texts[6:])) + "\n{oops\n")
    (src / "ignored.txt").write_text("not jsonl")
    (src / "c.jsonl.gz").write_bytes(gzip.compress(b'{"id": "c0", "text": "document zero of c"}\n')[:-12])
    params = from_dict(
        Params,
        {**BASIC, "min_chars": 10, "min_words": 3, "num_shards": 3, "on_bad_input": "quarantine"},
        "clean",
    )
    report = run(str(src), tmp_path / "out", params)
    assert (report["input"], report["kept"], report["rejected"]) == (
        14,
        12,
        {"invalid_json": 1, "unreadable": 1},
    )
    parts = sorted((tmp_path / "out" / "documents").iterdir())
    assert [p.name for p in parts] == [f"part-{s:05d}-of-00003.jsonl" for s in range(3)]
    ids = []
    for p in parts:
        shard_ids = [d["id"] for d in _jsonl(p)]
        assert shard_ids == sorted(shard_ids)
        ids += shard_ids
    assert sorted(ids) == [f"a{i:02d}" for i in range(6)] + [f"b{i:02d}" for i in range(6)]
    rejected = _jsonl(tmp_path / "out" / "rejected" / "rejected.jsonl")
    assert [(r["location"], r["reason"]) for r in rejected] == [
        ("c.jsonl.gz:1", "unreadable"),  # a truncated gzip: one rejected record, the run goes on
        ("sub/b.jsonl.gz:7", "invalid_json"),
    ]
    files = json.loads((tmp_path / "out" / "report.json").read_text())["files"]
    assert files["skipped"] == [{"file": "ignored.txt", "reason": "unsupported_format"}]
    assert [(u["file"], u["line"], u["lines_read"]) for u in files["unreadable"]] == [("c.jsonl.gz", 1, 0)]


def test_object_store_input_and_output(corpus: Path) -> None:
    """A remote output is built in a remote sibling folder (the workers of a distributed runner
    write it), then moved into place; fsspec's memory:// stands in for s3:// or gs://."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/in/corpus.jsonl", corpus.read_bytes())
    fs.pipe("/bucket/out/stale.txt", b"old output")
    run("memory://bucket/in", "memory://bucket/out", SMALL)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/bucket/out", detail=False))
    assert names == ["documents", "dropped", "metrics.json", "rejected", "report.json", "report.md"]
    assert [p for p in fs.ls("/bucket", detail=False) if ".tmp-" in p] == []
    report = json.loads(fs.cat_file("/bucket/out/report.json"))
    assert (report["input"], report["kept"], report["dropped"]["duplicate_exact"]) == (11, 2, 1)
    kept = fs.cat_file("/bucket/out/documents/part-00000-of-00001.jsonl").decode().splitlines()
    assert [json.loads(line)["id"] for line in kept] == ["d1", "d2"]
    assert fs.exists("/bucket/out/dropped/too_short.jsonl") and not fs.exists("/bucket/out/_spill")
    fs.rm("/bucket", recursive=True)


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


# --- bad input: an error by default, quarantined under clean.on_bad_input -------------------------

QUARANTINE = from_dict(
    Params, {**BASIC, "min_chars": 10, "max_chars": 60, "min_words": 3, "on_bad_input": "quarantine"}, "clean"
)


def _old_output(out: Path) -> str:
    """A previous run's output, whose bytes a failed run must leave as they were."""
    out.mkdir()
    (out / "report.json").write_text('{"previous": true}\n')
    return _digest(out)


def _truncated_shard(folder: Path, n: int = 300) -> tuple[Path, int]:
    """A .jsonl.gz of ``n`` good records cut to half its bytes; the number of whole lines left."""
    data = "".join(_doc(f"t{i:03d}", f"record number {i} reads fine") + "\n" for i in range(n)).encode()
    full = gzip.compress(data)
    path = folder / "shard.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    stream = zlib.decompressobj(wbits=31)  # gzip framing
    whole = stream.decompress(path.read_bytes()).count(b"\n")
    assert not stream.eof  # the end-of-stream marker is gone: truncated
    assert 0 < whole < n
    return path, whole


def test_truncated_gzip_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    shard, whole = _truncated_shard(tmp_path / "in")
    out = tmp_path / "out"
    before = _old_output(out)
    with pytest.raises(InputError) as exc:
        run(str(tmp_path / "in"), out, SMALL)
    message = str(exc.value)
    assert "\n" not in message
    assert f"{shard}: corrupt or truncated at line {whole + 1} ({whole} lines read" in message
    assert "on_bad_input: quarantine" in message
    assert _digest(out) == before  # the previous output is untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_truncated_gzip_is_quarantined_with_exact_accounting(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    shard, whole = _truncated_shard(tmp_path / "in")
    (tmp_path / "in" / "good.jsonl").write_text(_doc("g1", GOOD) + "\n" + "{nope\n")
    out = tmp_path / "out"
    report = run(str(tmp_path / "in"), out, QUARANTINE)
    # Every whole line read, plus the unreadable rest as one record; nothing else is invented.
    assert _counts(report) == {
        "input": whole + 1 + 2,
        "kept": whole + 1,
        "dropped": {},
        "rejected": {"invalid_json": 1, "unreadable": 1},
    }
    rejected = _jsonl(out / "rejected" / "rejected.jsonl")
    (cut,) = [r for r in rejected if r["reason"] == "unreadable"]
    assert cut["location"] == f"shard.jsonl.gz:{whole + 1}"
    assert cut["lines_read"] == whole and cut["error"].startswith("EOFError")
    assert cut["file_bytes"] == shard.stat().st_size == cut["stopped_at_byte"]
    assert cut["partial_line_bytes"] > 0 and cut["bytes_read"] > cut["partial_line_bytes"]
    full = json.loads((out / "report.json").read_text())
    assert _balanced(full)
    assert full["files"]["read"] == 2 and full["files"]["skipped"] == []
    (u,) = full["files"]["unreadable"]
    assert (u["file"], u["line"], u["lines_read"]) == ("shard.jsonl.gz", whole + 1, whole)
    kept = [d["id"] for d in _jsonl(out / "documents" / "part-00000-of-00001.jsonl")]
    assert kept == ["g1"] + [f"t{i:03d}" for i in range(whole)]
    md = (out / "report.md").read_text()
    assert f"`shard.jsonl.gz`: unreadable from line {whole + 1} ({whole} lines read" in md


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    src = tmp_path / "mixed"
    src.mkdir()
    (src / "docs.jsonl").write_text(_doc("d1", GOOD) + "\n" + _doc("d2", "another fine document here") + "\n")
    (src / "table.csv").write_text("id,text\nc1,a perfectly fine document\n")
    (src / "notes.txt").write_text("a perfectly fine document\n")
    return src


def test_unsupported_files_in_a_folder_are_an_error(mixed_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = _old_output(out)
    with pytest.raises(InputError) as exc:
        run(str(mixed_folder), out, SMALL)
    message = str(exc.value)
    assert "\n" not in message
    assert f"cannot read {mixed_folder}/notes.txt: a plain text file" in message  # sorted: notes first
    assert "(and 1 more: table.csv)" in message
    assert "clean reads JSONL (.jsonl, .jsonl.gz) only" in message and "ingest" in message
    assert _digest(out) == before


def test_unsupported_files_in_a_folder_are_listed_under_quarantine(
    mixed_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    report = run(str(mixed_folder), out, QUARANTINE)
    assert _counts(report) == {"input": 2, "kept": 2, "dropped": {}, "rejected": {}}
    full = json.loads((out / "report.json").read_text())
    assert full["files"] == {
        "read": 1,
        "skipped": [
            {"file": "notes.txt", "reason": "unsupported_format"},
            {"file": "table.csv", "reason": "unsupported_format"},
        ],
        "unreadable": [],
    }
    md = (out / "report.md").read_text()
    assert "`notes.txt`: skipped, unsupported_format" in md and "`table.csv`: skipped" in md


def _textless(tmp_path: Path) -> Path:
    path = tmp_path / "textless.jsonl"
    path.write_text("".join(json.dumps({"id": f"x{i}", "body": "no text key"}) + "\n" for i in range(4)))
    return path


def test_a_run_that_keeps_nothing_is_an_error(tmp_path: Path) -> None:
    path = _textless(tmp_path)
    out = tmp_path / "out"
    before = _old_output(out)
    with pytest.raises(InputError) as exc:
        run(str(path), out, SMALL)
    assert str(exc.value).startswith(
        f"clean: kept nothing from {path}: 4 input records (rejected missing_text 4)"
    )
    assert "\n" not in str(exc.value)
    assert _digest(out) == before


def test_a_run_that_keeps_nothing_is_written_under_quarantine(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run(str(_textless(tmp_path)), out, QUARANTINE)
    assert _counts(report) == {"input": 4, "kept": 0, "dropped": {}, "rejected": {"missing_text": 4}}
    assert (out / "documents" / "part-00000-of-00001.jsonl").read_text() == ""


@pytest.mark.parametrize(("name", "kind"), [("table.csv", "CSV"), ("table.parquet", "Parquet")])
@pytest.mark.parametrize("params", [SMALL, QUARANTINE], ids=["error", "quarantine"])
def test_a_single_csv_or_parquet_input_is_refused_in_one_line(
    tmp_path: Path, name: str, kind: str, params: Params
) -> None:
    path = tmp_path / name
    path.write_text("id,text\na,a perfectly fine document\n")
    with pytest.raises(InputError) as exc:
        run(str(path), tmp_path / "out", params)
    assert str(exc.value) == (
        f"clean: cannot read {path}: a {kind} file; clean reads JSONL (.jsonl, .jsonl.gz) only: "
        "convert CSV, Parquet or TXT into JSONL with the ingest stage"
    )
    assert not (tmp_path / "out").exists()


def test_bad_input_mode_is_checked() -> None:
    assert Params().on_bad_input == "error"
    with pytest.raises(ParamsError, match="^clean.on_bad_input: expected one of"):
        from_dict(Params, {"on_bad_input": "ignore"}, "clean")


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


# --- fuzzed bad input: the accounting invariant ---------------------------------------------------


def _fuzz_lines(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    lines: list[bytes] = []
    for i in range(n):
        kind = rng.randrange(16)
        doc_id = f"f{i:04d}" if rng.random() > 0.05 else f"f{rng.randrange(max(i, 1)):04d}"  # some repeat ids
        if kind < 6:
            text = prose(rng.randrange(10**6), rng.randrange(1, 12))
            if rng.random() < 0.3:
                text = "<p>" + text.replace(". ", ".</p>\n<p>", 2) + "</p> caf\u00c3\u00a9 &amp;"
            lines.append(json.dumps({"id": doc_id, "text": text, "meta": {"i": i}}).encode())
        elif kind == 6:
            lines.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))).replace(b"\n", b" "))
        elif kind == 7:
            full = json.dumps({"id": doc_id, "text": prose(i, 3)}).encode()
            lines.append(full[: rng.randrange(1, len(full) - 1)])
        elif kind == 8:
            lines.append(rng.choice([b"[]", b"42", b'"text"', b"null", b"true", b"{}"]))
        elif kind == 9:
            lines.append(
                json.dumps({"id": rng.choice([None, "", True, 1.5, []]), "text": prose(i, 6)}).encode()
            )
        elif kind == 10:
            text = rng.choice([None, 7, ["a"], {"t": 1}, "   ", "\x00\x01\x02", "\ufffd" * 50 + " x"])
            lines.append(json.dumps({"id": doc_id, "text": text}).encode())
        elif kind == 11:
            lines.append(json.dumps({"id": doc_id, "text": prose(i, 400)}).encode())  # too large (> 20 kB)
        elif kind == 12:
            lines.append(b'{"id": "\\udc80x", "text": "lone surrogate id"}')
        elif kind == 13:
            lines.append(json.dumps({"id": doc_id, "text": "\ud83d broken " + prose(i, 7)}).encode())
        elif kind == 14:
            lines.append(json.dumps({"id": doc_id, "text": "BOOM " + prose(i, 7)}).encode())
        else:
            lines.append(b"   ")  # blank: not a record
    return lines


def test_fuzzed_input_is_fully_accounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fineweb = quality.fineweb

    def exploding_fineweb(text, *args):  # a bug on some records must not lose the run
        if text.startswith("BOOM"):
            raise ZeroDivisionError("boom")
        return real_fineweb(text, *args)

    monkeypatch.setattr(quality, "fineweb", exploding_fineweb)
    path = tmp_path / "fuzz.jsonl"
    lines = _fuzz_lines(7, 400)
    path.write_bytes(b"\n".join(lines) + b"\n")
    params = from_dict(Params, {"max_record_bytes": 20_000, "outliers": {"min_docs": 20}}, "clean")
    out = tmp_path / "out"
    report = run(str(path), out, params)

    n_records = sum(1 for line in lines if line.strip())
    assert report["input"] == n_records
    assert _balanced(report)
    kept = sum(len(_jsonl(p)) for p in (out / "documents").glob("*.jsonl"))
    dropped = {
        filters.reason_of_path(p.relative_to(out / "dropped").as_posix()): len(_jsonl(p))
        for p in (out / "dropped").rglob("*.jsonl")
    }
    rejected = _jsonl(out / "rejected" / "rejected.jsonl")
    assert (kept, dropped) == (report["kept"], report["dropped"])
    assert kept + sum(dropped.values()) + len(rejected) == n_records
    assert len({r["location"] for r in rejected}) == len(rejected)  # one row per bad line
    reasons = set(report["rejected"])
    assert {"invalid_utf8", "invalid_json", "not_an_object", "missing_id", "non_string_text"} <= reasons
    assert {"too_large", "duplicate_id", "processing_error", "invalid_unicode"} <= reasons
    assert "ZeroDivisionError" in next(r["error"] for r in rejected if r["reason"] == "processing_error")
    assert report["dropped"].get("denoise:replacement_chars", 0) >= 1
    assert report["kept"] > 50
    for doc in (d for p in (out / "documents").glob("*.jsonl") for d in _jsonl(p)):
        assert "<p>" not in doc["text"] and "&amp;" not in doc["text"] and "\u00c3" not in doc["text"]


# --- curation end to end on a planted fixture -----------------------------------------------------

GERMAN = (
    "Der schnelle braune Fuchs springt über den faulen Hund. Die Stadt ist im Winter sehr kalt, und die "
    "Menschen bleiben gern zu Hause. Sie lesen Bücher und trinken Tee mit ihren Freunden. Am Abend gehen "
    "viele Leute in das Theater oder in ein kleines Restaurant. Die Kinder spielen im Park, bis es dunkel "
    "wird. Im Sommer fahren die Familien an das Meer und schwimmen jeden Tag."
)
LEAK = "an utterly charming and wonderfully acted story that keeps its quiet nerve until the very last scene"


def _edit(text: str, swaps: dict[int, str]) -> str:
    words = text.split(" ")
    for i, w in swaps.items():
        words[i] = w
    return " ".join(words)


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    docs: list[tuple[str, str]] = [(f"base{i:02d}", prose(1000 + i, 9)) for i in range(22)]
    base = prose(42, 14)
    docs += [
        ("near-a", base),
        ("near-b", _edit(base, {5: "lantern", 40: "orchard"})),
        ("near-c", base + " " + prose(43, 1)),  # the longest: the cluster's representative
        ("exact-1", prose(50, 9)),
        ("exact-2", prose(50, 9)),
        ("german", GERMAN),
        ("lorem", prose(51, 8) + " Lorem ipsum dolor sit amet, consectetur adipiscing elit."),
        ("pii", prose(52, 8) + " Write to jane.doe@example.org or call (202) 555-0143 today."),
        ("leak", prose(53, 8) + f" Critics wrote that it is {LEAK}."),
        (
            "train-text",
            prose(54, 8)
            + " Critics wrote that this is a plain and simple story about a family and its old dog.",
        ),
        ("digits", prose(55, 9) + " Codes: " + " ".join(str(10**7 + 7919 * k) for k in range(26)) + "."),
    ]
    for i in range(5):  # a repeated line in five documents is boilerplate
        docs[i] = (docs[i][0], "Subscribe to our newsletter\n\n" + docs[i][1])
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(_doc(i, t) + "\n" for i, t in docs) + "{not json\n", encoding="utf-8")
    evals = [
        {"id": "r1", "text": f"It is {LEAK}.", "label": "positive", "split": "test"},
        {
            "id": "r2",
            "text": "A plain and simple story about a family and its old dog.",
            "label": "negative",
            "split": "train",
        },
        {"id": "r3", "text": "Bland,  dull and far too long.", "label": "negative", "split": "valid"},
        {"id": "r4", "text": "bland, dull and far too long.", "label": "positive", "split": "train"},
    ]
    eval_path = tmp_path / "task.jsonl"
    eval_path.write_text("".join(json.dumps(r) + "\n" for r in evals), encoding="utf-8")
    return corpus, eval_path


def test_curation_end_to_end(planted: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, evals = planted
    params = from_dict(Params, {"outliers": {"min_docs": 10}, "min_chars": 100}, "clean")
    out = tmp_path / "out"
    run(str(corpus), out, params, decontaminate=str(evals))
    report = json.loads((out / "report.json").read_text())
    assert _balanced(report)
    assert (report["input"], report["rejected"]) == (34, {"invalid_json": 1})

    def dropped(reason: str) -> dict[str, dict]:
        return {d["id"]: d for d in _jsonl(out / "dropped" / filters.reason_path(reason))}

    assert set(dropped("duplicate_near")) == {"near-a", "near-b"}
    assert {d["duplicate_of"] for d in dropped("duplicate_near").values()} == {"near-c"}
    assert dropped("duplicate_exact")["exact-2"]["duplicate_of"] == "exact-1"
    assert set(dropped("language:de")) == {"german"}
    assert set(dropped("c4:lorem_ipsum")) == {"lorem"}
    assert set(dropped("contaminated")) == {"leak"}  # the train-split text is not evaluation data
    assert set(dropped("outlier:digit_ratio")) == {"digits"}
    assert report["kept"] == 34 - 1 - 7

    kept = {d["id"]: d for p in (out / "documents").glob("*.jsonl") for d in _jsonl(p)}
    assert "train-text" in kept and "base00" in kept
    signals = kept["near-c"]["meta"]["clean"]
    assert signals["dedup"] == {"cluster": "near-c", "cluster_size": 3}
    assert kept["exact-1"]["meta"]["clean"]["dedup"] == {"cluster": "exact-1", "cluster_size": 2}
    assert (signals["language"], signals["language_score"] > 0.9) == ("en", True)
    assert {"words", "stop_words", "mean_word_length", "digit_ratio", "dup_5gram"} <= set(signals["quality"])
    assert "<EMAIL>" in kept["pii"]["text"] and "<PHONE>" in kept["pii"]["text"]
    assert "jane.doe" not in kept["pii"]["text"]
    assert kept["pii"]["meta"]["clean"]["pii"] == {"card_number": 0, "email": 1, "ip_address": 0, "phone": 1}
    assert not any("Subscribe to our newsletter" in d["text"] for d in kept.values())
    assert kept["base00"]["meta"]["clean"]["denoise"] == {"boilerplate_lines": 1}

    assert report["boilerplate"]["top"] == [{"line": "Subscribe to our newsletter", "removed": 5}]
    assert report["pii"]["replaced"] == {"card_number": 0, "email": 1, "ip_address": 0, "phone": 1}
    assert report["dedup"]["clusters"] == 2 and report["dedup"]["near_duplicates"] == 2
    assert report["decontamination"] == {"eval_records": 4, "contaminated": 1}
    (conflict,) = report["label_conflicts"]["examples"]
    assert (conflict["labels"], conflict["ids"]) == (["negative", "positive"], ["r3", "r4"])
    assert report["outliers"]["active"] and "digit_ratio" in report["outliers"]["features"]
    assert report["counters"]["dropped.duplicate_near"] == 2
    md = (out / "report.md").read_text()
    for heading in (
        "## Dropped by reason",
        "## Outlier limits (applied)",
        "### dropped:duplicate_near",
        "## Samples",
    ):
        assert heading in md
    assert "`near-a` duplicate_of=near-c" in md

    run(str(corpus), tmp_path / "again", params, decontaminate=str(evals))
    assert _digest(out) == _digest(tmp_path / "again")  # byte-identical rerun
