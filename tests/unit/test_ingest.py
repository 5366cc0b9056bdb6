"""ingest: every input format, bad rows counted not fatal, the seeded review split, stable outputs."""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common.params import ParamsError, from_dict
from components.ingest import readers
from components.ingest.core import HELDOUT, assign_split, dedup_labelled, news_text, run
from components.ingest.params import Params

P = Params()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write_csv(path: Path, header: list[str], rows: list[list[str]], opener=open) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    d = tmp_path / "raw"
    (d / "sub").mkdir(parents=True)
    lines = [
        json.dumps({"text": "first jsonl doc", "lang": "en"}),
        "",  # blank: layout, not a record
        "{not json",
        json.dumps({"title": "no text"}),
        json.dumps({"text": 42}),
        json.dumps({"text": "   "}),
        json.dumps(["a", "list"]),
        json.dumps({"text": "second jsonl doc", "id": "x7"}),
    ]
    (d / "a.jsonl").write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "bad \xff byte"}\n')
    _write_csv(d / "b.csv", ["text", "author"], [["csv doc one", "ann"], ["csv doc two", "bob"]])
    with open(d / "b.csv", "a", encoding="utf-8") as f:
        f.write("too,many,fields\n")
    pq.write_table(pa.table({"text": ["parquet doc", None], "n": [1, 2]}), d / "c.parquet")
    (d / "sub" / "d.txt").write_text(
        "A whole text file.\n\nTwo paragraphs, one document.\n", encoding="utf-8"
    )
    with gzip.open(d / "e.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "gzipped doc"}) + "\n")
    _write_csv(d / "f.csv.bz2", ["text"], [["bz2 csv doc"]], opener=bz2.open)
    (d / "notes.md").write_text("not a supported format")
    return d


def test_every_format_in_a_folder_with_bad_rows_counted(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    metrics = run(None, None, out, P, inputs=[str(raw_dir)])
    docs = {d["id"]: d for d in _jsonl(out / "corpus.jsonl")}
    assert docs == {
        "a:000001": {"id": "a:000001", "text": "first jsonl doc", "source": "a", "meta": {"lang": "en"}},
        "a:000008": {"id": "a:000008", "text": "second jsonl doc", "source": "a", "meta": {"id": "x7"}},
        "b:000001": {"id": "b:000001", "text": "csv doc one", "source": "b", "meta": {"author": "ann"}},
        "b:000002": {"id": "b:000002", "text": "csv doc two", "source": "b", "meta": {"author": "bob"}},
        "c:000001": {"id": "c:000001", "text": "parquet doc", "source": "c", "meta": {"n": 1}},
        "sub/d:000001": {
            "id": "sub/d:000001",
            "text": "A whole text file.\n\nTwo paragraphs, one document.\n",
            "source": "sub/d",
            "meta": {},
        },
        "e:000001": {"id": "e:000001", "text": "gzipped doc", "source": "e", "meta": {}},
        "f:000001": {"id": "f:000001", "text": "bz2 csv doc", "source": "f", "meta": {}},
    }
    assert list(docs) == sorted(docs)
    assert metrics["skipped"] == {
        "_files": {"unsupported_format": 1},
        "a": {
            "empty_text": 1,
            "invalid_json": 1,
            "invalid_utf8": 1,
            "missing_text": 1,
            "non_string_text": 1,
            "not_an_object": 1,
        },
        "b": {"bad_row": 1},
        "c": {"missing_text": 1},
    }
    assert metrics["corpus"]["documents"] == 8
    # No reviews given: the task files exist and are empty, so downstream stages see a fixed layout.
    assert (out / "task.jsonl").read_text() == ""
    assert (out / "batches" / "plots.jsonl").read_text() == ""


def test_text_column_param_and_single_file_source(tmp_path: Path) -> None:
    path = tmp_path / "books.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"body": "a book", "text": "not the text"}) + "\n")
    params = from_dict(Params, {"text_column": "body"}, "ingest")
    run(None, None, tmp_path / "out", params, inputs=[str(path)])
    (doc,) = _jsonl(tmp_path / "out" / "corpus.jsonl")
    assert doc == {
        "id": "books:000001",
        "text": "a book",
        "source": "books",
        "meta": {"text": "not the text"},
    }


def test_fsspec_uri_input(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/lake/docs/part-1.jsonl", b'{"text": "from the lake"}\n')
    try:
        run(None, None, tmp_path / "out", P, inputs=["memory://lake/docs"])
    finally:
        fs.rm("/lake", recursive=True)
    (doc,) = _jsonl(tmp_path / "out" / "corpus.jsonl")
    assert (doc["id"], doc["text"]) == ("part-1:000001", "from the lake")


def test_unsupported_single_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("hi")
    with pytest.raises(ValueError, match="unsupported file type"):
        readers.discover(str(tmp_path / "x.md"))


def test_news_title_and_subtitle_lead_the_text() -> None:
    row = {"title": " Title ", "subtitle": "", "text": " Body. "}
    assert news_text(row, True) == "Title\n\nBody."
    assert news_text({**row, "subtitle": "Sub"}, True) == "Title\n\nSub\n\nBody."
    assert news_text(row, False) == "Body."
    assert news_text({**row, "text": "  "}, True) == ""  # a title alone is not a document


def _reviews_csv(path: Path, rows: list[list[str]]) -> Path:
    _write_csv(path, ["category", "text", "movie_name", "has_plot_and_reviews"], rows)
    return path


def test_news_and_reviews_samples(tmp_path: Path) -> None:
    news = tmp_path / "news.csv"
    header = ["article_id", "publish_date", "article_source_link", "title", "subtitle", "text"]
    _write_csv(
        news,
        header,
        [["2", "2017/2/7", "http://b", "Second", "", "Body two."], ["1", "2017/2/6", "http://a", "", "", ""]],
    )
    reviews = _reviews_csv(
        tmp_path / "rt.csv",
        [
            ["plot", "A plot summary.", "m", "True"],
            ["fresh", "Great film.", "m", "True"],
            ["rotten", "Dull film.", "m", "True"],
            ["fresh", "Great film.", "m2", "True"],  # same text, same label: kept once
            ["fresh", "Mixed film.", "m", "True"],
            ["rotten", "Mixed film.", "m", "True"],  # same text, two labels: both dropped
            ["meh", "Odd.", "m", "True"],
            ["fresh", "", "m", "True"],
        ],
    )
    params = from_dict(Params, {"heldout_fraction": 0.0}, "ingest")
    metrics = run(str(news), str(reviews), tmp_path / "out", params)
    out = tmp_path / "out"
    (doc,) = _jsonl(out / "corpus.jsonl")
    assert doc["id"] == "news:000002" and doc["text"] == "Second\n\nBody two." and doc["source"] == "news"
    assert doc["meta"] == {"article_id": "2", "publish_date": "2017/2/7", "url": "http://b"}
    task = _jsonl(out / "task.jsonl")
    assert [(t["id"], t["text"], t["label"]) for t in task] == [
        ("reviews:000002", "Great film.", "positive"),
        ("reviews:000003", "Dull film.", "negative"),
    ]
    assert all(t["split"] in ("train", "valid", "test") for t in task)
    assert _jsonl(out / "batches" / "plots.jsonl") == [{"id": "plots:000001", "text": "A plot summary."}]
    assert _jsonl(out / "batches" / "reviews.jsonl") == []
    assert metrics["skipped"] == {
        "news": {"missing_text": 1},
        "reviews": {"conflicting_label": 2, "duplicate_text": 1, "missing_text": 1, "unknown_category": 1},
    }
    # Review texts never enter the pretraining corpus.
    assert metrics["corpus"]["by_source"] == {"news": 1}


def test_split_is_seeded_order_free_and_disjoint(tmp_path: Path) -> None:
    rows = [
        ["fresh" if i % 3 else "rotten", f"review number {i} says something", "m", "True"] for i in range(400)
    ]
    params = from_dict(Params, {"heldout_fraction": 0.2}, "ingest")

    def splits(name: str, rows: list[list[str]], params: Params) -> dict[str, str]:
        out = tmp_path / name
        run(None, str(_reviews_csv(tmp_path / f"{name}.csv", rows)), out, params)
        result = {t["text"]: t["split"] for t in _jsonl(out / "task.jsonl")}
        held = {r["text"]: HELDOUT for r in _jsonl(out / "batches" / "reviews.jsonl")}
        assert not set(result) & set(held)  # held-out reviews are not in the task set
        return {**result, **held}

    forward = splits("fwd", rows, params)
    assert len(forward) == 400
    assert splits("rev", rows[::-1], params) == forward  # independent of row order
    counts = {s: list(forward.values()).count(s) for s in ("train", "valid", "test", HELDOUT)}
    assert 50 <= counts[HELDOUT] <= 110 and 200 <= counts["train"] <= 300 and counts["valid"] > 10
    other = splits("seed", rows, from_dict(Params, {"heldout_fraction": 0.2, "seed": 1}, "ingest"))
    assert other != forward  # the seed matters
    assert all(assign_split(t, params) == s for t, s in forward.items())


def test_dedup_labelled_keeps_smallest_id() -> None:
    skipped: Counter = Counter()
    kept = dedup_labelled(
        [
            {"id": "r:3", "text": "same", "label": "positive"},
            {"id": "r:1", "text": "same", "label": "positive"},
            {"id": "r:2", "text": "other", "label": "negative"},
        ],
        skipped,
    )
    assert sorted(k["id"] for k in kept) == ["r:1", "r:2"]
    assert skipped == {"duplicate_text": 1}


def test_rerun_is_byte_identical(raw_dir: Path, tmp_path: Path) -> None:
    run(None, None, tmp_path / "one", P, inputs=[str(raw_dir)])
    run(None, None, tmp_path / "two", P, inputs=[str(raw_dir)])
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")


def test_duplicate_ids_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.jsonl").write_text('{"text": "one"}\n')
    (tmp_path / "b" / "x.jsonl").write_text('{"text": "two"}\n')
    metrics = run(None, None, tmp_path / "out", P, inputs=[str(tmp_path / "a"), str(tmp_path / "b")])
    assert [d["text"] for d in _jsonl(tmp_path / "out" / "corpus.jsonl")] == ["one"]
    assert metrics["skipped"] == {"x": {"duplicate_id": 1}}


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"train_fraction": 0.5}, "ingest.train_fraction"),
        ({"heldout_fraction": 1.0}, "ingest.heldout_fraction"),
        ({"valid_fraction": -0.1}, "ingest.valid_fraction"),
        ({"text_column": ""}, "ingest.text_column"),
        ({"seed": "zero"}, "ingest.seed"),
    ],
)
def test_bad_params_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ParamsError, match=f"^{key}"):
        from_dict(Params, data, "ingest")


def test_nothing_to_read_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to read"):
        run(None, None, tmp_path / "out", P)
    assert not (tmp_path / "out").exists()


# --- the cloze QA set (llm.qa) and its decontamination ----------------------------------------

NEWS_HEADER = ["article_id", "publish_date", "article_source_link", "title", "subtitle", "text"]
BODY = (
    "Michigan billionaire Betsy DeVos was confirmed today after Vice President Mike Pence cast a "
    "vote in the Senate. Critics of DeVos said the vote was close."
)


def _qa_news(path: Path) -> Path:
    _write_csv(
        path,
        NEWS_HEADER,
        [
            [
                str(i),
                "2017/2/7",
                f"http://{i}",
                f"Senate Backs Betsy DeVos ({i})",
                "Mike Pence casts vote",
                BODY,
            ]
            for i in range(1, 41)
        ]
        + [["99", "2017/2/7", "http://x", "Nothing To Ask", "", BODY]],
    )
    return path


def test_qa_rows_and_metrics(tmp_path: Path) -> None:
    params = from_dict(Params, {"qa": {"valid_fraction": 0.25, "test_fraction": 0.25}}, "ingest")
    metrics = run(str(_qa_news(tmp_path / "news.csv")), None, tmp_path / "out", params)
    rows = _jsonl(tmp_path / "out" / "qa.jsonl")
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert {r["answer"] for r in rows} == {"Senate", "Betsy DeVos"}  # 2 per article (the cap)
    assert len(rows) == 80 and "99" not in {r["article_id"] for r in rows}
    first = rows[0]
    assert first["question"] == "@placeholder Backs Betsy DeVos (1)" and first["answer"] == "Senate"
    # "Critics of DeVos": a known error of the capitalised-span rule (a sentence-initial common word
    # joined by a connector), kept here so a change of the rule shows.
    assert first["candidates"] == ["Betsy DeVos", "Critics of DeVos", "Michigan", "Mike Pence", "Senate"]
    splits: dict[str, set[str]] = {}
    for r in rows:
        splits.setdefault(r["article_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())  # an article's questions share its split
    qa_metrics = metrics["qa"]
    assert qa_metrics["questions"] == 80 and sum(qa_metrics["by_split"].values()) == 80
    assert qa_metrics["articles_by_split"] == {
        s: sum(next(iter(v)) == s for v in splits.values()) for s in ("train", "valid", "test")
    }
    assert all(qa_metrics["articles_by_split"].values())
    # The subtitle's question ("Mike Pence casts vote") is over the cap of 2 per article.
    assert qa_metrics["skipped"] == {"no_question": 1, "over_max_questions": 40}

    off = from_dict(Params, {"qa": {"enabled": False}}, "ingest")
    assert run(str(tmp_path / "news.csv"), None, tmp_path / "off", off)["qa"]["questions"] == 0
    assert (tmp_path / "off" / "qa.jsonl").read_text() == ""


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"qa": {"max_passage_words": 0}}, "ingest.qa.max_passage_words"),
        ({"qa": {"valid_fraction": 0.6, "test_fraction": 0.4}}, "ingest.qa.test_fraction"),
        ({"qa": {"questions": 3}}, "ingest.qa.questions"),
        ({"qa": {"enabled": "yes"}}, "ingest.qa.enabled"),
    ],
)
def test_bad_qa_params_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ParamsError, match=f"^{key}"):
        from_dict(Params, data, "ingest")


def test_clean_drops_qa_eval_articles_and_keeps_train_ones(tmp_path: Path) -> None:
    """ingest -> clean on real sample articles: the corpus document of a QA test (or valid) article
    is dropped as ``contaminated``; a QA train article is kept."""
    from components.clean.core import run as clean
    from components.clean.params import Params as CleanParams

    news = Path(__file__).resolve().parents[2] / "data" / "raw" / "news_articles.csv"
    if not news.exists():
        pytest.skip(f"{news} missing (run `make samples`)")
    csv.field_size_limit(10**9)
    with open(news, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    from llm import qa

    def first(split: str) -> dict[str, str]:
        return next(
            r
            for r in rows
            if qa.article_questions(r, qa.QAConfig()) and qa.split_of(r["article_id"], 0.1, 0.1) == split
        )

    picked = [first("test"), first("valid"), first("train")]
    small = tmp_path / "news.csv"
    _write_csv(small, NEWS_HEADER, [[r[k] for k in NEWS_HEADER] for r in picked])
    run(str(small), None, tmp_path / "ingest", P)
    qa_rows = _jsonl(tmp_path / "ingest" / "qa.jsonl")
    assert {r["split"] for r in qa_rows} == {"train", "valid", "test"}

    out = tmp_path / "clean"
    ingest = tmp_path / "ingest"
    clean(
        str(ingest / "corpus.jsonl"),
        out,
        CleanParams(),
        decontaminate=[str(ingest / "task.jsonl"), str(ingest / "qa.jsonl")],
    )
    ids = [f"news:{int(r['article_id']):06d}" for r in picked]
    dropped = {d["id"] for d in _jsonl(out / "dropped" / "contaminated.jsonl")}
    kept = {d["id"] for p in (out / "documents").glob("*.jsonl") for d in _jsonl(p)}
    assert dropped == set(ids[:2])  # the test and valid articles
    assert ids[2] in kept  # the train article goes on to pretraining
    report = json.loads((out / "report.json").read_text())
    assert report["decontamination"]["contaminated"] == 2
    assert "label_conflicts" not in report or not report["label_conflicts"].get("examples")
