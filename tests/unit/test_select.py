"""select: constraints, the choice, the no-regression gate, and the exported model folder."""

from __future__ import annotations

import json

import pytest

from components.common.params import ParamsError, from_dict
from components.select.core import GateRefused, NoCandidate, choose, gate, read_promoted, run, violations
from components.select.params import Params


def row(name, macro_f1, p95=10.0, size_mb=20.0, kind="classifier", variant="float"):
    return {
        "model": name,
        "kind": kind,
        "variant": variant,
        "accuracy": macro_f1 + 0.01,
        "macro_f1": macro_f1,
        "ece": 0.05,
        "per_class": {"negative": {"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 10}},
        "latency_p50_ms": p95 / 2,
        "latency_p95_ms": p95,
        "throughput_per_s": 100.0,
        "size_bytes": int(size_mb * 1e6),
        "parameters": 1000,
    }


ROWS = [
    row("finetuned", 0.80, p95=40.0, size_mb=21.8),
    row("int8", 0.795, p95=12.0, size_mb=6.0, variant="int8"),
    row("distilled", 0.70, p95=8.0, size_mb=15.0, variant="distilled"),
    row("baseline", 0.90, p95=1.0, size_mb=1.0, kind="baseline", variant="tfidf-logreg"),
]


def test_selection_honours_the_constraints():
    # The baseline scores best but is never shipped; within 0.005 of the best, the smallest wins.
    assert choose(ROWS, Params(max_p95_latency_ms=0, max_size_mb=0))["model"] == "int8"
    assert (
        choose(ROWS, Params(max_p95_latency_ms=0, max_size_mb=0, prefer_smaller_within=0))["model"]
        == "finetuned"
    )
    # A latency cap of 30 ms rules out the float model even without the size preference.
    assert (
        choose(ROWS, Params(max_p95_latency_ms=30, max_size_mb=0, prefer_smaller_within=0))["model"] == "int8"
    )
    # Caps of 10 ms and 20 MB leave only the distilled model.
    assert choose(ROWS, Params(max_p95_latency_ms=10, max_size_mb=20))["model"] == "distilled"
    assert violations(ROWS[0], Params(max_p95_latency_ms=30, max_size_mb=20)) == [
        "p95 latency 40.0 ms > 30 ms",
        "size 21.80 MB > 20 MB",
    ]
    with pytest.raises(NoCandidate, match="no model meets the constraints"):
        choose(ROWS, Params(max_p95_latency_ms=5, max_size_mb=0))


def test_gate_refuses_a_worse_model():
    promoted = {
        "model": "finetuned",
        "scores": {"macro_f1": 0.80},
        "promoted_at": "2026-01-01T00:00:00+00:00",
    }
    with pytest.raises(GateRefused, match="refusing to promote 'distilled': macro_f1 0.7000 is below 0.8000"):
        gate(ROWS[2], promoted, Params())
    assert "no model promoted before" in gate(ROWS[2], None, Params())
    assert ">=" in gate(ROWS[1], promoted, Params(tolerance=0.01))  # within the tolerance passes
    with pytest.raises(GateRefused):
        gate(ROWS[1], promoted, Params(tolerance=0.0))


def test_params_are_checked():
    with pytest.raises(ParamsError, match="select.max_size_mb: must be >= 0"):
        from_dict(Params, {"max_size_mb": -1}, "select")
    with pytest.raises(ParamsError, match="select.metric"):
        from_dict(Params, {"metric": "loss"}, "select")


@pytest.fixture()
def stage(tmp_path):
    evaluation = tmp_path / "evaluate"
    evaluation.mkdir()
    (evaluation / "models.json").write_text(
        json.dumps({"task_split": "test", "examples": 10, "models": ROWS})
    )
    (evaluation / "predictions").mkdir()
    (evaluation / "predictions" / "int8.jsonl").write_text('{"id": "1"}\n')
    folders = {"finetuned": tmp_path / "finetune", "int8": tmp_path / "compress" / "int8"}
    for name, folder in folders.items():
        folder.mkdir(parents=True)
        (folder / "classifier.json").write_text(
            json.dumps({"labels": ["negative", "positive"], "name": name})
        )
        (folder / "model.safetensors").write_bytes(name.encode())
        (folder / "tokenizer.json").write_text("{}")
    return tmp_path


def test_run_exports_the_choice_and_records_the_promotion(stage):
    promoted = stage / "models" / "promoted.json"
    out = stage / "select"
    metrics = run(
        str(stage / "evaluate"),
        str(stage / "finetune"),
        str(stage / "compress"),
        str(out),
        Params(),
        str(promoted),
        now="T1",
    )
    assert metrics["chosen"] == "int8"
    assert (out / "model" / "model.safetensors").read_bytes() == b"int8"
    assert sorted(p.name for p in (out / "model").iterdir()) == [
        "MODEL_CARD.md",
        "classifier.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert (out / "predictions.jsonl").read_text() == '{"id": "1"}\n'  # deploy's smoke reference
    decision = json.loads((out / "decision.json").read_text())
    assert decision["chosen"] == "int8" and len(decision["models"]) == 4
    assert (
        "baseline" in (out / "decision.md").read_text() and "**chosen**" in (out / "decision.md").read_text()
    )
    assert "macro-F1 0.7950" in (out / "MODEL_CARD.md").read_text()
    assert json.loads(promoted.read_text())["scores"]["macro_f1"] == pytest.approx(0.795)

    # A later run whose best eligible model is worse is refused: nothing written, record unchanged.
    record = promoted.read_text()
    again = stage / "select2"
    with pytest.raises(GateRefused):
        run(
            str(stage / "evaluate"),
            str(stage / "finetune"),
            str(stage / "compress"),
            str(again),
            Params(max_p95_latency_ms=10, max_size_mb=20),
            str(promoted),
        )
    assert not again.exists() and promoted.read_text() == record
    # ... and the reasons are recorded beside the (untouched) output.
    refusal = json.loads((stage / "select2.refused.json").read_text())
    assert "refusing to promote" in refusal["refused"] and refusal["previous"]["model"] == "int8"
    assert refusal["chosen"]["model"] == "distilled"


def test_a_refusal_record_goes_once_the_gate_passes(stage):
    out, refusal = stage / "select", stage / "select.refused.json"
    refusal.write_text("{}")
    run(str(stage / "evaluate"), str(stage / "finetune"), str(stage / "compress"), str(out), Params())
    assert out.exists() and not refusal.exists()


def test_an_empty_record_is_nothing_promoted(tmp_path):
    # The record a fresh clone holds (models/promoted.json is tracked as {}).
    record = tmp_path / "promoted.json"
    record.write_text("{}\n")
    assert read_promoted(record) is None
    assert gate(ROWS[1], read_promoted(record), Params()) == "no model promoted before"


def test_the_default_tolerance_is_above_the_seed_noise():
    assert Params().tolerance > 0.0136  # the range of macro-F1 over fine-tuning seeds 0/1/2 (params doc)
