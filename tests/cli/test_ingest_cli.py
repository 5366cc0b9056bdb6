"""ingest CLI: main() on temp dirs; a bad params file exits 2 before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.common.params import SECTIONS
from components.ingest.__main__ import main


def _params(path: Path, **ingest) -> Path:
    data = {stage: {} for stage in SECTIONS}
    data["ingest"] = ingest
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    news = tmp_path / "news.csv"
    news.write_text(
        "article_id,publish_date,article_source_link,title,subtitle,text\n"
        "1,2017/2/7,http://a,Headline About Oslo,,The body of the article from Oslo.\n"
        "2,2017/2/7,http://b,No body,,\n",
        encoding="utf-8",
    )
    reviews = tmp_path / "rt.csv"
    rows = [f"{'fresh' if i % 2 else 'rotten'},review {i},m,True" for i in range(40)]
    reviews.write_text(
        "category,text,movie_name,has_plot_and_reviews\n" + "\n".join(rows) + "\nplot,A plot.,m,True\n",
        encoding="utf-8",
    )
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "more.jsonl").write_text('{"text": "an extra document"}\n', encoding="utf-8")
    return news, reviews, extra


def test_main_writes_the_contract_files(sources, tmp_path: Path) -> None:
    news, reviews, extra = sources
    out = tmp_path / "out"
    params = _params(tmp_path / "params.yaml", heldout_fraction=0.25)
    argv = ["--news", str(news), "--reviews", str(reviews), "--input", str(extra)]
    assert main([*argv, "--output", str(out), "--params", str(params)]) == 0
    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert [d["id"] for d in corpus] == ["more:000001", "news:000001"]
    assert corpus[1]["text"] == "Headline About Oslo\n\nThe body of the article from Oslo."
    (row,) = [json.loads(line) for line in (out / "qa.jsonl").read_text().splitlines()]
    assert (row["question"], row["answer"], row["article_id"]) == ("Headline About @placeholder", "Oslo", "1")
    assert (
        row["prompt"].endswith("Question: Headline About @placeholder\nAnswer:")
        and row["response"] == " Oslo\n"
    )
    task = [json.loads(line) for line in (out / "task.jsonl").read_text().splitlines()]
    held = [json.loads(line) for line in (out / "batches" / "reviews.jsonl").read_text().splitlines()]
    assert len(task) + len(held) == 40 and held
    assert {t["label"] for t in task} == {"positive", "negative"}
    assert set(held[0]) == {"id", "text", "label"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["batches"]["plots"]["examples"] == 1
    assert metrics["skipped"]["news"] == {"missing_text": 1}
    assert metrics["qa"]["questions"] == 1 and sum(metrics["qa"]["articles_by_split"].values()) == 1


def test_bad_params_exit_2_without_output(sources, tmp_path: Path, capsys) -> None:
    news, _, _ = sources
    out = tmp_path / "out"
    params = _params(tmp_path / "params.yaml", heldout_fraction="lots")
    assert main(["--news", str(news), "--output", str(out), "--params", str(params)]) == 2
    assert "ingest.heldout_fraction" in capsys.readouterr().err
    assert not out.exists()


def test_no_source_is_a_usage_error(tmp_path: Path, capsys) -> None:
    # Refused by the stage entry (both doors), before any output exists.
    code = main(["--output", str(tmp_path / "out"), "--params", str(_params(tmp_path / "p.yaml"))])
    assert code == 2
    assert "nothing to read" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
