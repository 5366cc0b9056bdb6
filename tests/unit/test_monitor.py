"""monitor: text features, seeded sampling, the drift verdict read by metric name, and Evidently
flagging plot summaries (not held-out reviews) against a review reference."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pandas as pd
import pytest

from components.common.io import write_jsonl
from components.common.params import ParamsError, from_dict
from components.monitor.core import batch_name, run, sample_texts, usable_texts
from components.monitor.params import Params
from llm.drift import read_verdict, run_drift, stable_html_ids, write_report
from llm.text_features import (
    FEATURE_COLUMNS,
    char_length,
    mean_word_length,
    non_letter_share,
    text_features,
    word_count,
)

RAW = Path(__file__).resolve().parents[2] / "data" / "raw" / "rotten_tomatoes.csv.bz2"


# --- pure helpers -------------------------------------------------------------------------------


def test_text_features():
    assert char_length("héllo wörld") == 11
    assert word_count("  two\twords \n") == 2
    assert mean_word_length("ab cdef") == 3.0
    assert mean_word_length("   ") == 0.0
    # Whitespace is not counted: 4 characters, of which "1" and "!" are not letters.
    assert non_letter_share("a1 b!") == 0.5
    assert non_letter_share("") == 0.0
    assert non_letter_share("Été") == 0.0  # accented letters are letters
    features = text_features("A film, 2 hours.")
    assert tuple(features) == FEATURE_COLUMNS
    assert features == {
        "char_length": 16.0,
        "word_count": 4.0,
        "mean_word_length": 3.25,
        "non_letter_share": 3 / 13,
    }


def test_batch_name_and_usable_texts():
    assert batch_name("out/ingest/batches/plots.jsonl") == "plots"
    assert batch_name("s3://lake/batches/2024-05-01.jsonl.gz") == "2024-05-01"
    records = [
        {"id": "a", "text": "fine"},
        {"id": "b", "text": "  "},
        {"id": "c"},
        {"text": "no id"},
        {"text": 3},
    ]
    assert usable_texts(records) == [("a", "fine"), ("no id", "no id")]


def test_sample_texts_is_seeded_and_independent_of_file_order():
    rows = [(f"id-{i}", f"text {i}") for i in range(100)]
    sample = sample_texts(rows, 10, seed=0)
    assert len(sample) == 10
    assert sample == sorted(sample, key=lambda t: int(t.split()[1]))  # file order kept
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert set(sample_texts(shuffled, 10, seed=0)) == set(sample)
    assert set(sample_texts(rows, 10, seed=1)) != set(sample)
    assert sample_texts(rows, 1000, seed=0) == [t for _, t in rows]


def test_params_are_checked():
    assert from_dict(Params, {}, "monitor") == Params()
    with pytest.raises(ParamsError, match=r"^monitor\.drift_share: must be within \[0, 1\]"):
        from_dict(Params, {"drift_share": 1.5}, "monitor")
    with pytest.raises(ParamsError, match=r"^monitor\.num_method: expected one of"):
        from_dict(Params, {"num_method": "chi-by-eye"}, "monitor")
    with pytest.raises(ParamsError, match=r"^monitor\.min_rows: must be <= max_rows"):
        from_dict(Params, {"min_rows": 10, "max_rows": 5}, "monitor")


def _metric(kind: str, value, **config) -> dict:
    return {
        "id": kind,
        "metric_name": kind,
        "config": {"type": f"evidently:metric_v2:{kind}", **config},
        "value": value,
    }


def test_verdict_is_read_by_metric_name_not_position():
    report = {
        "metrics": [
            _metric("ValueDrift", 0.93, column="text"),
            _metric("RowCount", 123),  # an unrelated metric must not be mistaken for the verdict
            _metric("ValueDrift", 0.01, column="char_length"),
            _metric("DriftedColumnsCount", {"count": 1.0, "share": 0.5}),
        ],
        "tests": [],
    }
    verdict = read_verdict(report, drift_share=0.5)
    assert verdict.drift_detected  # share >= drift_share, Evidently's dataset-drift rule
    assert (verdict.drifted_columns, verdict.columns, verdict.drift_share) == (1, 2, 0.5)
    assert verdict.scores == {"char_length": 0.01, "text": 0.93}
    reordered = {"metrics": report["metrics"][::-1], "tests": []}
    assert read_verdict(reordered, drift_share=0.5) == verdict
    assert not read_verdict(report, drift_share=0.6).drift_detected
    with pytest.raises(KeyError, match="DriftedColumnsCount"):
        read_verdict({"metrics": report["metrics"][:3]}, drift_share=0.5)


def test_stable_html_ids_renames_consistently():
    a, b = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "6f9619ff-8b86-4d01-b42d-00cf4fc964ff"
    page = f'var metric_{"ab" * 16} = {{"{a}": 1, "{b}": 2}}; draw(graphs_metric_{"ab" * 16}, "{a}")'
    out = stable_html_ids(page)
    assert a not in out and b not in out and "ab" * 16 not in out
    assert out.count("00000000-0000-4000-8000-000000000000") == 2  # both uses of `a`, same new id
    assert "00000000-0000-4000-8000-000000000001" in out
    assert out.count(f"metric_{0:032d}") == 2
    assert stable_html_ids(page) == out


# --- Evidently on real text ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[str]]:
    """Shuffled reviews and plot summaries from the Rotten Tomatoes sample (seeded)."""
    df = pd.read_csv(RAW, usecols=["category", "text"]).dropna()
    df = df[df["text"].str.strip() != ""].sample(frac=1.0, random_state=0)
    return {
        "reviews": df.loc[df["category"] != "plot", "text"].tolist(),
        "plots": df.loc[df["category"] == "plot", "text"].tolist(),
    }


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (telemetry, NLTK downloads ...)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_plots_drift_and_held_out_reviews_do_not(corpus, no_network, tmp_path):
    params = Params()
    reference = corpus["reviews"][:800]
    same = run_drift(reference, corpus["reviews"][800:1100], params)
    shifted = run_drift(reference, corpus["plots"][:300], params)

    report = write_report(same, tmp_path / "same")
    assert report == json.loads((tmp_path / "same" / "report.json").read_text())
    assert "<html" in (tmp_path / "same" / "report.html").read_text()[:2000].lower()
    verdict = read_verdict(report, params.drift_share)
    assert not verdict.drift_detected
    assert verdict.drifted_columns <= 1
    assert verdict.scores["text"] < params.text_threshold  # domain classifier near chance

    plots = read_verdict(shifted.dict(), params.drift_share)
    assert plots.drift_detected
    assert plots.drifted_columns == plots.columns == 1 + len(FEATURE_COLUMNS)
    assert plots.scores["text"] > 0.75 and plots.scores["char_length"] > 1.0


def test_a_different_vocabulary_drifts_on_text_alone(no_network):
    """Same lengths and punctuation, different words: only the TF-IDF text test can see it."""
    rng = random.Random(0)
    films = [
        "movie",
        "film",
        "actor",
        "script",
        "director",
        "scene",
        "plot",
        "cast",
        "drama",
        "comedy",
        "funny",
        "boring",
    ]
    ships = [
        "vessel",
        "harbor",
        "cargo",
        "anchor",
        "sailor",
        "captain",
        "deck",
        "hull",
        "voyage",
        "port",
        "storm",
        "tide",
    ]

    def texts(words, n):
        return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 14))) + "." for _ in range(n)]

    verdict = read_verdict(run_drift(texts(films, 300), texts(ships, 200), Params()).dict(), drift_share=0.2)
    assert verdict.scores["text"] > 0.9
    assert verdict.drifted_columns >= 1 and verdict.drift_detected


def test_core_run_writes_reports_metrics_and_skips_tiny_batches(corpus, tmp_path):
    reference = tmp_path / "predictions.jsonl"
    write_jsonl(
        reference,
        (
            {"id": f"r{i}", "text": t, "label": "positive", "prediction": "positive", "score": 0.9}
            for i, t in enumerate(corpus["reviews"][:600])
        ),
    )
    batches = tmp_path / "batches"
    write_jsonl(
        batches / "reviews.jsonl",
        ({"id": f"h{i}", "text": t} for i, t in enumerate(corpus["reviews"][600:900])),
    )
    write_jsonl(
        batches / "plots.jsonl", ({"id": f"p{i}", "text": t} for i, t in enumerate(corpus["plots"][:300]))
    )
    write_jsonl(
        batches / "tiny.jsonl", ({"id": f"t{i}", "text": t} for i, t in enumerate(corpus["plots"][300:310]))
    )
    params = from_dict(Params, {"max_rows": 250}, "monitor")

    metrics = run(reference, batches, str(tmp_path / "out"), params)
    assert metrics == json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["reference_rows"] == 250 and metrics["alerts"] == 1
    assert metrics["batches"]["plots"]["drift_detected"] is True
    assert metrics["batches"]["reviews"]["drift_detected"] is False
    assert metrics["batches"]["reviews"]["rows"] == 250  # sampled down to max_rows
    assert metrics["batches"]["tiny"] == {"drift_detected": None, "rows": 10, "skipped": "too_few_rows"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "plots", "reviews"]

    # Same inputs and params -> byte-identical outputs (HTML included).
    run(reference, batches, str(tmp_path / "again"), params)
    for name in ("metrics.json", "plots/report.html", "plots/report.json", "reviews/report.json"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_core_run_refuses_a_tiny_reference(tmp_path):
    write_jsonl(tmp_path / "ref.jsonl", [{"id": "a", "text": "only one"}])
    (tmp_path / "batches").mkdir()
    with pytest.raises(ValueError, match="need at least 50"):
        run(tmp_path / "ref.jsonl", tmp_path / "batches", str(tmp_path / "out"), Params())
    assert not (tmp_path / "out").exists()
