"""report: the DAG from the stages' run records, the curves, the tables, the links; one page, no script."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from components.common.entry import RUN_RECORD, write_run_record
from components.report.core import DAG, dag_edges, layers, run, thin
from components.report.params import Params
from tests.report_fixtures import READS, make_stage_outputs


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return make_stage_outputs(tmp_path / "outputs")


def make_report(outputs: Path) -> tuple[str, dict]:
    metrics = run(Params(), str(outputs / "report"), **{s: str(outputs / s) for s in DAG})
    return (outputs / "report" / "report.html").read_text(), metrics


def test_the_dag_comes_from_what_each_stage_recorded_it_read(outputs: Path):
    page, metrics = make_report(outputs)
    edges = set(re.findall(r'data-edge="([^"]+)"', page))
    assert edges == {
        "ingest-clean",
        "clean-tokenize",
        "ingest-tokenize",
        "tokenize-pretrain",
        "pretrain-finetune",
        "ingest-finetune",
        "finetune-evaluate",
        "pretrain-evaluate",
        "evaluate-select",
        "evaluate-monitor",
        "ingest-monitor",
    }
    # Every stage is drawn; those without a run record say so (deploy ran before records).
    assert set(re.findall(r'data-stage="([^"]+)"', page)) == set(DAG)
    assert page.count("no run record") >= 2 * len(set(DAG) - {"ingest", *READS})
    assert metrics["stages"] == len(DAG) and metrics["stages_recorded"] == 1 + len(READS)
    assert metrics["seconds_recorded"] == pytest.approx(12.5 * (1 + len(READS)), abs=0.01)
    # Times and figures are in the stage table, the wall-clock ones marked.
    finished = json.loads((outputs / "clean" / RUN_RECORD).read_text())["finished_at"]
    shown = finished.replace("T", " ").replace("+00:00", " UTC")
    assert '<span class="t">12s</span>' in page and f'<span class="t">{shown}</span>' in page


def test_the_page_shows_curves_confusion_models_drift_and_links(outputs: Path):
    page, metrics = make_report(outputs)
    # The pretraining curve: both series, three points each.
    series = re.findall(r'data-series="([^"]+)" points="([^"]+)"', page)
    assert [(name, len(points.split())) for name, points in series] == [("train_loss", 3), ("valid_loss", 3)]
    # The confusion matrix, actual by row.
    assert re.search(r"<b>negative</b>.*?>4<.*?>1<", page) and re.search(r"<b>positive</b>.*?>2<.*?>3<", page)
    # The model table: the chosen row marked, every verdict shown.
    assert re.search(r'<tr class="chosen"><td>baseline</td>', page)
    assert "p95 latency 31.0 ms &gt; 30 ms" in page and page.count(">eligible<") == 1
    # Drift: one verdict per batch, links to the Evidently pages relative to the report.
    assert re.findall(r'class="(drift|ok)">([^<]+)', page) == [("drift", "DRIFT"), ("ok", "no drift")]
    assert 'href="../monitor/plots/report.html"' in page and 'href="../select/MODEL_CARD.md"' in page
    assert metrics["drifted_batches"] == 1
    # The model card inline, escaped; the page needs no script and fetches nothing.
    assert "A &lt;TF-IDF&gt; baseline." in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_missing_stages_make_a_page_that_says_so(tmp_path: Path):
    run(Params(), str(tmp_path / "report"))
    page = (tmp_path / "report" / "report.html").read_text()
    assert "No training curves yet." in page and "the select stage has not run" in page
    assert page.count("no run record") >= len(DAG)


def test_a_run_record_names_what_the_stage_read(tmp_path: Path):
    from datetime import UTC, datetime

    (tmp_path / "a.jsonl").write_text("")
    arguments = {
        "task": str(tmp_path / "a.jsonl"),
        "extra": [str(tmp_path / "a.jsonl"), "s3://lake/x"],
        "image": "llm:latest",  # not data: left out
        "missing": str(tmp_path / "nope"),
        "output": str(tmp_path / "out"),
    }
    write_run_record("clean", arguments, datetime(2026, 1, 1, tzinfo=UTC), 3.25)
    record = json.loads((tmp_path / "out" / RUN_RECORD).read_text())
    assert record["stage"] == "clean" and record["seconds"] == 3.25
    assert record["started_at"] == "2026-01-01T00:00:00+00:00" and record["output"] == str(tmp_path / "out")
    assert record["arguments"] == {"task": arguments["task"], "extra": arguments["extra"]}


def test_edges_and_layers_follow_paths_not_names():
    records = {
        "ingest": {"output": "/o/ingest", "arguments": {}},
        # "/o/ingest2" is not inside "/o/ingest": no edge from a shared prefix.
        "clean": {"output": "/o/clean", "arguments": {"data": "/o/ingest/corpus.jsonl", "x": "/o/ingest2"}},
        "tokenize": {"output": "/o/tok", "arguments": {"cleaned": "/o/clean", "task": "/o/ingest/t.jsonl"}},
    }
    edges = dag_edges(records)
    assert edges == [("ingest", "clean"), ("ingest", "tokenize"), ("clean", "tokenize")]
    assert {s: d for s, d in layers(edges).items() if d} == {"clean": 1, "tokenize": 2}


def test_thinning_keeps_the_ends_and_the_count():
    points = [(float(i), float(i * i)) for i in range(1000)]
    kept = thin(points, 50)
    assert len(kept) == 50 and kept[0] == points[0] and kept[-1] == points[-1]
    assert thin(points[:10], 50) == points[:10]


def test_params_are_checked_naming_the_key():
    with pytest.raises(ValueError, match="report.curve_points"):
        Params(curve_points=1)


def test_the_roi_section_shows_selects_figures_with_costs_as_timed_figures(outputs: Path):
    from components.select import roi
    from tests.unit.test_select_roi import COSTS, METRICS, NIGHT, PREVIOUS, table

    rows = table()
    decision = json.loads((outputs / "select" / "decision.json").read_text())
    decision["roi"] = roi.return_on_investment(rows[0], rows, PREVIOUS, METRICS, NIGHT, COSTS)
    (outputs / "select" / "decision.json").write_text(json.dumps(decision))
    page, _ = make_report(outputs)
    section = page[page.index('<h2 id="roi">') : page.index('<h2 id="drift">')]
    # Training: 0.75 accelerator-h off-peak at $0.06/h; serving at p50 36 ms; 2 points over the
    # previous version at $0.0225 each, 15 over the baseline.
    assert (
        '<td>training (pretrain + finetune)</td><td><span class="t">0.75</span></td><td><span class="t">$0.045</span>'
        in section
    )
    assert "off-peak at $0.06/h" in section
    assert (
        '<td>serving per 1k requests (one review each)</td><td></td><td><span class="t">$0.001</span>'
        in section
    )
    assert re.search(
        r"<td>previous version</td><td>finetuned \([^)]*\)</td><td>0\.7800</td><td>\+2\.00</td><td><span class=\"t\">\$0\.0225</span>",
        section,
    )
    assert re.search(r"<td>baseline</td><td>baseline</td><td>0\.6500</td><td>\+15\.00</td>", section)
    # Without a previous version the reason shows instead of a figure; no script either way.
    decision["roi"] = roi.return_on_investment(rows[0], rows, None, METRICS, NIGHT, COSTS)
    (outputs / "select" / "decision.json").write_text(json.dumps(decision))
    page, _ = make_report(outputs)
    assert "no version promoted before" in page and "<script" not in page


def test_without_an_roi_block_the_section_says_so(outputs: Path):
    page, _ = make_report(outputs)
    assert "No return-on-investment figures (select wrote no roi block)." in page
