"""Monitoring generations: the continuous monitor reads exactly the generations of its window (N
logged, N judged); judges prompts and outputs against a reference generations.jsonl (evaluate's,
built here from the news sample as cloze prompts): held-out news prompts raise no alert, long
non-news prompts raise a generation drift alert, empty / repeating outputs raise output drift and
the empty / repetition alerts; cost per 1M generated tokens comes from the params price and
tokens_out; a window without generations says so and raises no generation alert while the
classification monitoring goes on; the workspace gets the generator's project and panels."""

from __future__ import annotations

import json
import random
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from components.common.io import write_jsonl
from components.common.params import from_dict
from llm.drift import DriftParams
from llm.text_features import generation_features, repeated_ngram_share
from monitoring.__main__ import main
from monitoring.alerts import check_generation_alerts
from monitoring.cost import generation_cost
from monitoring.loop import monitor_window
from monitoring.settings import Settings
from monitoring.window import read_generations
from serving.prediction_log import GENERATIONS, ParquetLog, PredictionLog
from tests.task_fixtures import write_params

ROOT = Path(__file__).resolve().parents[2]
NEWS = ROOT / "data" / "raw" / "news_articles.csv"
REVIEWS = ROOT / "data" / "raw" / "rotten_tomatoes.csv.bz2"
T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
GEN = "gen0123abcd"  # the generator's version
CLS = "cls0123abcd"  # a classifier's version
LOOPBACK = ("127.0.0.1", "::1", "localhost")
LATENCY_MS = 240.0  # every request's latency (ms): the model time priced per request


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any connection beyond loopback fails the test (NLTK downloads, telemetry ...)."""
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in LOOPBACK:
            raise AssertionError(f"network access attempted: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def cloze(passage_text: str, title: str, rng: random.Random) -> tuple[str, str] | None:
    """(prompt, answer) in the shape of the QA set: a title entity found in the passage becomes
    @placeholder in the question; the passage is the text's first 60-120 words."""
    passage = " ".join(passage_text.split()[: rng.randint(60, 120)])
    for word in title.split()[1:]:
        word = word.strip(",.:;'\"?!")
        if len(word) > 3 and word[0].isupper() and word in passage:
            question = title.replace(word, "@placeholder", 1)
            return f"{passage}\nQuestion: {question}\nAnswer:", word
    return None


def test_repetition_and_generation_features():
    assert repeated_ngram_share("a b a b a b", 2) == pytest.approx(3 / 5)
    assert repeated_ngram_share("Barack Obama") == 0.0 and repeated_ngram_share("") == 0.0
    assert repeated_ngram_share("the the the the") == pytest.approx(2 / 3)
    assert repeated_ngram_share("The the THE", 1) == pytest.approx(2 / 3)  # case-insensitive
    features = generation_features("Who won?\nAnswer:", "   ")
    assert features["output_empty"] == 1.0 and features["output_char_length"] == 3.0
    assert features["prompt_word_count"] == 3.0 and generation_features("x", "Obama")["output_empty"] == 0.0


def test_cost_per_1m_generated_tokens_from_the_price():
    cost = generation_cost(
        requests=100,
        generations=250,
        tokens_in=50_000,
        tokens_out=2_000,
        compute_seconds=36.0,
        usd_per_hour=2.0,
    )
    assert cost["usd"] == pytest.approx(0.02)  # 36 s at $2 per hour
    assert cost["usd_per_1m_generated_tokens"] == pytest.approx(0.02 / 2_000 * 1e6)
    assert cost["usd_per_1k_requests"] == pytest.approx(0.2)
    assert generation_cost(0, 0, 0, 0, 0.0, 2.0)["usd_per_1m_generated_tokens"] is None


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict:
    """A reference generations.jsonl (250 news cloze prompts with their answers), a classification
    reference, and a log with, per hour from 10:00: held-out news prompts (requests of 1-3 prompts,
    good answers); long non-news prompts (plot summaries); news prompts with empty or repeating
    outputs; classifications only (no generations)."""
    root = tmp_path_factory.mktemp("generations")
    rng = random.Random(0)
    news = pd.read_csv(NEWS, usecols=["title", "text"]).dropna().sample(frac=1.0, random_state=0)
    pairs = [
        p for p in (cloze(t, title, rng) for title, t in zip(news["title"], news["text"], strict=True)) if p
    ]
    reference, heldout, degenerate = pairs[:250], pairs[250:370], pairs[370:490]
    write_jsonl(
        root / "generations.jsonl",
        (
            {
                "id": f"q{i}",
                "prompt": p,
                "output": a,
                "tokens_in": len(p.split()),
                "tokens_out": 3,
                "ms_per_token": 20.0 + i % 5,
                "finish_reason": "stop",
            }
            for i, (p, a) in enumerate(reference)
        ),
    )
    df = pd.read_csv(REVIEWS, usecols=["category", "text"]).dropna().sample(frac=1.0, random_state=0)
    plots = df.loc[df["category"] == "plot", "text"].tolist()
    reviews = df.loc[df["category"] != "plot", "text"].tolist()
    write_jsonl(
        root / "predictions.jsonl",
        (
            {"id": f"t{i}", "text": t, "prediction": "positive", "score": 0.8}
            for i, t in enumerate(reviews[:80])
        ),
    )
    long_plots = []
    for i in range(120):
        passage = " ".join(plots[3 * i : 3 * i + 3])
        words = [w for w in passage.split() if len(w) > 3 and w[0].isupper()]
        long_plots.append(
            (f"{passage}\nQuestion: Who is @placeholder in the story?\nAnswer:", words[0] if words else "He")
        )

    def rows(pairs_, start, prefix, outputs=None):
        """One request per 1-3 prompts, every 20 s; output tokens 1 + item."""
        out, i, request = [], 0, 0
        while i < len(pairs_):
            size = 1 + request % 3
            for item, (prompt, answer) in enumerate(pairs_[i : i + size]):
                out.append(
                    {
                        "request_id": f"{prefix}{request}",
                        "item": item,
                        "ts": start + timedelta(seconds=20 * request),
                        "prompt": prompt,
                        "output": answer if outputs is None else outputs(i + item),
                        "tokens_in": len(prompt.split()),
                        "tokens_out": 1 + item,
                        "finish_reason": "stop",
                        "latency_ms": LATENCY_MS,
                        "ttft_ms": 60.0,
                        "ms_per_token": 20.0 + (i + item) % 5,
                        "model_version": GEN,
                    }
                )
            i += size
            request += 1
        return out

    def broken(i: int) -> str:
        return "" if i % 2 else "the the the the the the the the"

    windows = {
        "heldout": rows(heldout, T0, "h"),
        "plots": rows(long_plots, T0 + timedelta(hours=1), "p"),
        "degenerate": rows(degenerate, T0 + timedelta(hours=2), "d", outputs=broken),
    }
    # The real writer of the server's log, in small parts (several files per window).
    log = ParquetLog(str(root / "log"), GENERATIONS, flush_rows=25, background=False)
    for batch in windows.values():
        log.append(batch)
    log.close()
    predictions = PredictionLog(str(root / "log"), background=False)
    predictions.predictions.append(
        {
            "request_id": f"c{i}",
            "item": 0,
            "ts": T0 + timedelta(hours=3, seconds=30 * i),
            "text": t,
            "prediction": "positive",
            "score": 0.8,
            "latency_ms": 20.0,
            "compute_ms": 5.0,
            "tokens": 30,
            "model_version": CLS,
        }
        for i, t in enumerate(reviews[100:160])
    )
    predictions.close()
    return {
        "root": root,
        "log": str(root / "log"),
        "reference": str(root / "predictions.jsonl"),
        "generations": str(root / "generations.jsonl"),
        "windows": windows,
    }


def _run(scenario, out: Path, hour: int, settings: Settings | None = None, **kwargs) -> dict:
    return monitor_window(
        scenario["log"],
        scenario["reference"],
        out,
        DriftParams(),
        settings or Settings(),
        T0 + timedelta(hours=hour),
        generations_reference=scenario["generations"],
        **kwargs,
    )


def test_n_logged_generations_are_n_window_rows(scenario):
    for hour, name in enumerate(("heldout", "plots", "degenerate")):
        logged = scenario["windows"][name]
        read = read_generations(scenario["log"], T0 + timedelta(hours=hour), T0 + timedelta(hours=hour + 1))
        frame = read.frame
        assert len(frame) == len(logged) and len(read.files) > 1  # several parts, none lost
        keys = set(zip(frame["request_id"], frame["item"], strict=True))
        assert keys == {(r["request_id"], r["item"]) for r in logged}  # none double counted
        assert frame["output"].tolist() == [r["output"] for r in logged]
        assert str(frame["ts"].dt.tz) == "UTC"
    # A window over all three hours holds every row once.
    total = read_generations(scenario["log"], T0, T0 + timedelta(hours=3)).frame
    assert len(total) == sum(len(w) for w in scenario["windows"].values())


def test_held_out_prompts_raise_no_alert_and_cost_comes_from_the_price(scenario, tmp_path):
    settings = from_dict(Settings, {"prices": {"serve_usd_per_hour": 0.2}}, "monitoring")
    summary = _run(scenario, tmp_path / "run", 1, settings, workspace=tmp_path / "workspace")
    logged = scenario["windows"]["heldout"]
    generations = summary["generations"]
    assert summary["rows"] == 0 and summary["generation_rows"] == len(logged) == generations["rows"]
    judged = generations["versions"][GEN]
    assert judged["rows"] == len(logged) and judged["drift"]["rows"] == len(logged)
    for side in ("prompts", "outputs"):
        assert judged["drift"][side]["drift_detected"] is False, judged["drift"][side]
    assert judged["drift"]["prompts"]["scores"]["prompt"] < 0.6  # the prompts' TF-IDF AUC
    assert judged["drift"]["prompts"]["columns"] == 6 and judged["drift"]["outputs"]["columns"] == 7
    assert judged["outputs"]["empty"] == 0 and judged["outputs"]["repetition_mean"] == 0.0
    assert summary["alerts"] == 0 and summary["alert_kinds"] == []

    # Cost: each request's latency once, at monitoring.prices.serve_usd_per_hour, over tokens_out.
    requests = {r["request_id"] for r in logged}
    tokens_out = sum(r["tokens_out"] for r in logged)
    usd = len(requests) * LATENCY_MS / 1000 / 3600 * 0.2
    cost = judged["cost"]
    assert cost["requests"] == len(requests) and cost["tokens_out"] == tokens_out
    assert cost["usd"] == pytest.approx(usd, rel=1e-5)
    assert cost["usd_per_1m_generated_tokens"] == pytest.approx(usd / tokens_out * 1e6, rel=1e-5)
    assert judged["ms_per_token"]["p50_ms"] == pytest.approx(22.0)
    assert judged["ms_per_token"]["reference_mean_ms"] == pytest.approx(22.0)

    # The reports, and the generator's project with its panels in the workspace.
    for tag in ("generation_prompts", "generation_outputs", "generation_ops"):
        assert (tmp_path / "run" / GEN / tag / "report.json").exists()
    ops = json.loads((tmp_path / "run" / GEN / "generation_ops" / "report.json").read_text())
    means = {
        m["config"].get("column"): m["value"]
        for m in ops["metrics"]
        if m["config"]["type"].endswith(":MeanValue")
    }
    assert means["usd_per_1m_tokens"] == pytest.approx(cost["usd_per_1m_generated_tokens"], rel=1e-5)
    from monitoring.workspace import GENERATOR, model_project, open_workspace

    workspace = open_workspace(tmp_path / "workspace")
    assert [p.name for p in workspace.list_projects()] == [f"generator model {GEN}"]
    project = model_project(workspace, GEN, GENERATOR)
    assert len(workspace.list_runs(project.id)) == 3
    titles = " | ".join(p.title for p in workspace.get_dashboard(project.id).panels)
    for words in (
        "Generations per window",
        "prompt",
        "output",
        "empty",
        "per generated token",
        "1M generated tokens",
    ):
        assert words in titles

    # A dearer price crosses the cost threshold: the same window alerts on cost only.
    dear = from_dict(Settings, {"prices": {"serve_usd_per_hour": 100.0}}, "monitoring")
    assert _run(scenario, tmp_path / "dear", 1, dear)["alert_kinds"] == ["generation_cost"]


def test_long_non_news_prompts_raise_a_generation_drift_alert(scenario, tmp_path):
    params = write_params(tmp_path / "params.yaml")
    args = ["--once", "--end", "2026-05-01T12:00:00Z", "--log", scenario["log"], "--reference"]
    args += [scenario["reference"], "--generations-reference", scenario["generations"]]
    args += ["--output", str(tmp_path / "out"), "--no-workspace", "--params", str(params)]
    assert main(args) == 1
    run = tmp_path / "out" / "20260501T120000Z"
    judged = json.loads((run / "metrics.json").read_text())["generations"]["versions"][GEN]
    prompts = judged["drift"]["prompts"]
    assert prompts["drift_detected"] is True and prompts["scores"]["prompt"] > 0.75
    assert prompts["scores"]["prompt_char_length"] > 0.2
    alerts = json.loads((run / "alerts.json").read_text())
    kinds = [a["kind"] for a in alerts["alerts"]]
    assert kinds == ["generation_drift"] and "prompts" in alerts["alerts"][0]["message"]
    assert alerts["alerts"][0]["model_version"] == GEN
    assert (run / "report.html").read_text().count("<iframe") == 3  # prompts, outputs, ops


def test_empty_and_repeating_outputs_raise_output_alerts(scenario, tmp_path):
    summary = _run(scenario, tmp_path / "run", 3)
    judged = summary["generations"]["versions"][GEN]
    assert judged["drift"]["outputs"]["drift_detected"] is True
    assert judged["drift"]["prompts"]["drift_detected"] is False  # news prompts, like the reference
    rows = len(scenario["windows"]["degenerate"])
    assert judged["outputs"]["empty"] == rows // 2
    assert judged["outputs"]["repetition_mean"] == pytest.approx((rows - rows // 2) / rows * 6 / 7)
    assert summary["alert_kinds"] == ["generation_drift", "generation_empty", "generation_repetition"]


def test_a_window_without_generations_says_so_and_classifications_go_on(scenario, tmp_path):
    summary = _run(scenario, tmp_path / "run", 4)
    assert summary["generation_rows"] == 0
    assert summary["generations"]["skipped"] == "no_generations" and summary["generations"]["versions"] == {}
    assert "no generations in this window" in summary["generations"]["message"]
    assert list(summary["versions"]) == [CLS] and summary["rows"] == 60  # classifications judged as before
    assert summary["versions"][CLS]["drift"]["drift_detected"] is not None  # judged
    assert not any(k.startswith("generation") for k in summary["alert_kinds"])
    assert not (tmp_path / "run" / GEN).exists()
    # Without a reference file, generations are still counted and priced; drift is skipped.
    no_ref = monitor_window(
        scenario["log"],
        scenario["reference"],
        tmp_path / "noref",
        DriftParams(),
        Settings(),
        T0 + timedelta(hours=1),
    )
    assert no_ref["generations"]["versions"][GEN]["drift"] == {
        "drift_detected": None,
        "skipped": "no_reference",
    }
    assert no_ref["alerts"] == 0


def test_too_few_generations_are_not_judged():
    summary = {
        "model_version": GEN,
        "rows": 3,
        "drift": {"drift_detected": None, "skipped": "too_few_rows"},
        "outputs": {"empty": 3, "empty_share": 1.0, "repetition_mean": 0.0, "skipped": "too_few_rows"},
        "ms_per_token": {"p95_ms": 20.0},
        "cost": {"usd_per_1m_generated_tokens": 1.0},
    }
    assert check_generation_alerts(summary, Settings().alerts) == []
