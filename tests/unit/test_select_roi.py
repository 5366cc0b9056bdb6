"""select's return on investment (components.select.roi), by numbers checkable by hand: training
accelerator-hours priced off-peak or on-peak at the pretrain run's start, the serving estimate from
evaluate's latency and throughput, macro-F1 against the previous version and the baseline, USD per
point gained; the tables of the model card and decision.md; and both doors of the one entry
giving select the same prices (components.common.entry.stage_costs)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from components.common.entry import Costs, InputError, run_stage, stage_costs
from components.common.params import to_dict
from components.select import roi
from components.select.core import run
from components.select.params import Params
from monitoring.settings import Prices, TrainingWindow
from tests.task_fixtures import write_params
from tests.unit.test_select import row

PRICES = Prices(serve_usd_per_hour=0.10, train_usd_per_hour=0.10, train_off_peak_usd_per_hour=0.06)
WINDOW = TrainingWindow(enabled=True, time_zone="UTC", start="22:00", end="06:00")
COSTS = Costs(prices=PRICES, training_window=WINDOW)
NIGHT = datetime(2026, 5, 1, 23, 0, tzinfo=UTC)  # inside 22:00-06:00: off-peak
NOON = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)  # on-peak
METRICS = {
    "pretrain": {"seconds": 1800.0, "accelerator_hours": 0.5},
    "finetune": {"seconds": 900.0, "accelerator_hours": 0.25},
    "compress": {"variants": {}},  # compress records no time
}


def table():
    finetuned = {
        **row("finetuned", 0.80),
        "latency_p50_ms": 36.0,
        "throughput_per_s": 100.0,
        "tokens_per_review": 40.0,
    }
    int8 = {**row("int8", 0.795, variant="int8"), "tokens_per_review": 40.0}
    baseline = {
        **row("baseline", 0.65, kind="baseline", variant="tfidf-logreg"),
        "fit_seconds": 36.0,
        "tokens_per_review": 20.0,
    }
    return [finetuned, int8, baseline]


PREVIOUS = {"model": "finetuned", "promoted_at": "2026-04-01T00:00:00+00:00", "scores": {"macro_f1": 0.78}}


def test_training_is_priced_off_peak_or_on_peak_at_the_pretrain_start():
    rows = table()
    night = roi.return_on_investment(rows[0], rows, PREVIOUS, METRICS, NIGHT, COSTS)
    noon = roi.return_on_investment(rows[0], rows, PREVIOUS, METRICS, NOON, COSTS)
    # 0.5 + 0.25 accelerator-hours: $0.06/h off-peak = $0.045, $0.10/h on-peak = $0.075.
    assert night["training_cost"]["accelerator_hours"] == pytest.approx(0.75)
    assert (night["training_cost"]["period"], night["training_cost"]["usd"]) == (
        "off-peak",
        pytest.approx(0.045),
    )
    assert (noon["training_cost"]["period"], noon["training_cost"]["usd"]) == (
        "on-peak",
        pytest.approx(0.075),
    )
    assert night["training_cost"]["stages"]["pretrain"]["usd"] == pytest.approx(0.03)
    assert night["training_cost"]["priced_at"] == NIGHT.isoformat()
    # An unknown start is priced on-peak, never at the cheaper guess.
    unknown = roi.return_on_investment(rows[0], rows, PREVIOUS, METRICS, None, COSTS)
    assert unknown["training_cost"]["period"] == "on-peak" and unknown["training_cost"]["priced_at"] is None

    # 80.00 - 78.00 = 2 points over the previous version: $0.045 / 2 = $0.0225 a point (off-peak).
    assert night["quality"]["previous"]["delta_points"] == pytest.approx(2.0)
    assert night["usd_per_macro_f1_point"]["vs_previous"] == pytest.approx(0.0225)
    assert noon["usd_per_macro_f1_point"]["vs_previous"] == pytest.approx(0.0375)
    # 15 points over the baseline, whose fit took 36 s = 0.01 h ($0.0006 off-peak):
    # ($0.045 - $0.0006) / 15.
    assert night["quality"]["baseline"]["delta_points"] == pytest.approx(15.0)
    assert night["usd_per_macro_f1_point"]["vs_baseline"] == pytest.approx((0.045 - 0.0006) / 15)


def test_serving_is_estimated_from_evaluates_latency_and_throughput():
    rows = table()
    s = roi.return_on_investment(rows[0], rows, None, METRICS, NIGHT, COSTS)["serving_cost"]
    # One review per request at p50 36 ms = 1e-5 h at $0.10/h = $1e-6 a request: $0.001 per 1k;
    # 25,000 requests of 40 tokens make 1M tokens: $0.025.
    assert s["usd_per_1k_requests"] == pytest.approx(0.001)
    assert s["usd_per_1m_tokens"] == pytest.approx(0.025)
    # In batches at 100 reviews/s: 10 ms a review, $2.7778e-4 per 1k, 250 s = $0.0069444 per 1M tokens.
    assert s["usd_per_1k_requests_batched"] == pytest.approx(1e-2 / 3600 * 0.10 * 1000)
    assert s["usd_per_1m_tokens_batched"] == pytest.approx(250 / 3600 * 0.10)
    assert "estimated from evaluate's measurements" in s["basis"]
    # Without evaluate's token count there is no per-token figure, and it says so.
    bare = {k: v for k, v in rows[0].items() if k != "tokens_per_review"}
    s = roi.serving_cost(bare, COSTS)
    assert s["usd_per_1m_tokens"] is None and "no tokens_per_review" in s["note"]


def test_missing_figures_are_unknown_with_a_reason_never_zero():
    rows = table()
    # No version promoted before: nothing to divide by.
    first = roi.return_on_investment(rows[0], rows, None, METRICS, NIGHT, COSTS)
    assert first["quality"]["previous"] is None
    assert first["usd_per_macro_f1_point"]["vs_previous"] is None
    assert first["usd_per_macro_f1_point"]["vs_previous_reason"] == "no version promoted before"
    # No gain: None, and the loss in points.
    better = {**PREVIOUS, "scores": {"macro_f1": 0.81}}
    worse = roi.return_on_investment(rows[0], rows, better, METRICS, NIGHT, COSTS)
    assert worse["usd_per_macro_f1_point"]["vs_previous"] is None
    assert worse["usd_per_macro_f1_point"]["vs_previous_reason"] == "no gain (-1.00 points)"
    # Pretrain's hours missing: the training total is unknown, not the finetune part alone.
    partial = {**METRICS, "pretrain": None}
    unknown = roi.return_on_investment(rows[0], rows, PREVIOUS, partial, NIGHT, COSTS)
    assert unknown["training_cost"]["accelerator_hours"] is None and unknown["training_cost"]["usd"] is None
    assert unknown["training_cost"]["missing"] == ["pretrain"]
    assert "no pretrain metrics.json" in unknown["usd_per_macro_f1_point"]["vs_previous_reason"]
    # The baseline without a recorded fit time: no made-up 0.
    no_fit = [rows[0], rows[1], {k: v for k, v in rows[2].items() if k != "fit_seconds"}]
    base = roi.return_on_investment(no_fit[2], no_fit, None, METRICS, NIGHT, COSTS)
    assert base["training_cost"]["usd"] is None
    assert "evaluate recorded no fit_seconds" in base["training_cost"]["note"]
    vs = roi.return_on_investment(no_fit[0], no_fit, None, METRICS, NIGHT, COSTS)["usd_per_macro_f1_point"]
    assert vs["vs_baseline"] is None and "baseline's training cost" in vs["vs_baseline_reason"]
    # The baseline against itself: said so.
    assert base["quality"]["baseline_reason"] == "this is the baseline"
    # No prices at all: hours, no dollars.
    hours_only = roi.return_on_investment(rows[0], rows, PREVIOUS, METRICS, NIGHT, None)
    assert hours_only["training_cost"]["accelerator_hours"] == pytest.approx(0.75)
    assert (
        hours_only["training_cost"]["usd"] is None
        and hours_only["serving_cost"]["usd_per_1k_requests"] is None
    )


def test_a_compress_variant_adds_compress_only_when_it_records_hours():
    rows = table()
    int8 = roi.return_on_investment(rows[1], rows, PREVIOUS, METRICS, NIGHT, COSTS)["training_cost"]
    assert int8["included"] == ["pretrain", "finetune"] and "compress" in int8["not_included"]
    assert int8["usd"] == pytest.approx(0.045) and "compress not included" in int8["note"]
    recorded = {**METRICS, "compress": {"seconds": 360.0, "accelerator_hours": 0.1}}
    int8 = roi.return_on_investment(rows[1], rows, PREVIOUS, recorded, NIGHT, COSTS)["training_cost"]
    assert int8["included"] == ["pretrain", "finetune", "compress"]
    assert int8["usd"] == pytest.approx(0.85 * 0.06)


def test_the_model_card_table_shows_the_figures_and_the_reasons():
    rows = table()
    text = roi.markdown(roi.return_on_investment(rows[0], rows, PREVIOUS, METRICS, NIGHT, COSTS))
    assert text.startswith("## Return on investment\n")
    assert "| training (pretrain + finetune) | 0.75 | $0.045 | off-peak at $0.06/h" in text
    assert "| serving per 1k requests (one review each) | | $0.001 | p50 latency at $0.1/h |" in text
    assert "| serving per 1M tokens (one review each) | | $0.025 |" in text
    assert "| previous version | finetuned (2026-04-01T00:00:00+00:00) | 0.7800 | +2.00 | $0.0225 |" in text
    assert "| baseline | baseline | 0.6500 | +15.00 | $0.00296 |" in text
    first = roi.markdown(roi.return_on_investment(rows[0], rows, None, METRICS, NIGHT, COSTS))
    assert "| previous version | - | - | - | - (no version promoted before) |" in first
    candidates = roi.candidates_markdown(
        [roi.return_on_investment(r, rows, PREVIOUS, METRICS, NIGHT, COSTS) for r in rows]
    )
    assert candidates.count("\n") == 5 and "| baseline | 0.01 | $0.0006 |" in candidates


@pytest.fixture
def stage(tmp_path):
    """Stage outputs select reads: evaluate's table, the model folders, and pretrain/finetune
    metrics.json with pretrain's run record (started at 23:00 UTC, off-peak)."""
    evaluation = tmp_path / "evaluate"
    evaluation.mkdir()
    (evaluation / "models.json").write_text(
        json.dumps({"task_split": "test", "examples": 10, "models": table()})
    )
    for folder in (tmp_path / "finetune", tmp_path / "compress" / "int8"):
        folder.mkdir(parents=True)
        for name in ("classifier.json", "model.safetensors", "tokenizer.json"):
            (folder / name).write_text("{}")
    (tmp_path / "finetune" / "metrics.json").write_text(json.dumps(METRICS["finetune"]))
    (tmp_path / "compress" / "metrics.json").write_text("{}")
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "metrics.json").write_text(json.dumps(METRICS["pretrain"]))
    (tmp_path / "pretrain" / "run.json").write_text(json.dumps({"started_at": NIGHT.isoformat()}))
    return tmp_path


def test_select_writes_the_roi_block_card_and_decision_table(stage):
    promoted = stage / "promoted.json"
    promoted.write_text(json.dumps(PREVIOUS))
    out = stage / "select"
    metrics = run(
        str(stage / "evaluate"),
        str(stage / "finetune"),
        str(stage / "compress"),
        str(out),
        Params(prefer_smaller_within=0),
        promoted=str(promoted),
        pretrained=str(stage / "pretrain"),
        costs=COSTS,
    )
    decision = json.loads((out / "decision.json").read_text())
    assert decision["chosen"] == "finetuned" and decision["roi"]["model"] == "finetuned"
    assert decision["roi"]["training_cost"]["usd"] == pytest.approx(0.045)  # off-peak: run.json at 23:00
    assert {r["model"]: r["roi"]["training_cost"]["usd"] for r in decision["models"]} == {
        "finetuned": pytest.approx(0.045),
        "int8": pytest.approx(0.045),
        "baseline": pytest.approx(0.0006),
    }
    assert metrics["usd_per_macro_f1_point_vs_previous"] == pytest.approx(0.0225)
    assert metrics["macro_f1_points_vs_baseline"] == pytest.approx(15.0)
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Return on investment" in card and "$0.0225" in card
    assert (out / "model" / "MODEL_CARD.md").read_text() == card
    md = (out / "decision.md").read_text()
    assert "## Return on investment" in md and "| model | training accelerator-hours |" in md


def test_both_doors_give_select_the_same_prices(stage, tmp_path):
    # The command line's door: the params file's monitoring section.
    params = write_params(
        tmp_path / "params.yaml",
        select={"prefer_smaller_within": 0},
        monitoring={
            "prices": to_dict(PRICES),
            "training_window": to_dict(WINDOW),
        },
    )
    arguments = {
        "evaluation": str(stage / "evaluate"),
        "finetuned": str(stage / "finetune"),
        "variants": str(stage / "compress"),
        "pretrained": str(stage / "pretrain"),
        "promoted": "",
    }
    run_stage("select", str(params), output=str(tmp_path / "cli"), **arguments)
    # The Kubeflow door: the select section as a dict, the costs pipeline parameter as a dict
    # (protobuf Struct numbers are doubles).
    costs = {"prices": to_dict(PRICES), "training_window": to_dict(WINDOW)}
    run_stage(
        "select", {"prefer_smaller_within": 0.0}, output=str(tmp_path / "kfp"), costs=costs, **arguments
    )
    cli, kfp = (json.loads((tmp_path / d / "decision.json").read_text())["roi"] for d in ("cli", "kfp"))
    assert cli == kfp and cli["training_cost"]["usd_per_hour"] == 0.06
    assert math.isclose(cli["training_cost"]["usd"], 0.045)
    # A dict of params without the costs is refused: prices are never guessed.
    with pytest.raises(InputError, match="costs"):
        stage_costs({"prefer_smaller_within": 0.0})
    with pytest.raises(InputError, match="unknown key 'price'"):
        stage_costs({}, {"price": {}})
