"""select: constraints, the choice, the no-regression gate, and the exported model folder (of
either kind: the TF-IDF baseline is a candidate like the others)."""

from __future__ import annotations

import json

import pytest

from components.common.params import ParamsError, from_dict
from components.select.core import GateRefused, NoCandidate, choose, gate, read_promoted, run, violations
from components.select.generative import NoGenerator, choose_generator
from components.select.params import GenerativeParams, Params


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


# A table where the baseline loses on the objective (BASELINE_WINS: one where it wins).
ROWS = [
    row("finetuned", 0.80, p95=40.0, size_mb=21.8),
    row("int8", 0.795, p95=12.0, size_mb=6.0, variant="int8"),
    row("distilled", 0.70, p95=8.0, size_mb=15.0, variant="distilled"),
    row("baseline", 0.65, p95=6.0, size_mb=0.8, kind="baseline", variant="tfidf-logreg"),
]
BASELINE_WINS = [
    *ROWS[:3],
    row("baseline", 0.85, p95=6.0, size_mb=0.8, kind="baseline", variant="tfidf-logreg"),
]


def test_selection_honours_the_constraints():
    # Within 0.005 of the best, the smallest wins.
    assert choose(ROWS, Params(max_p95_latency_ms=0, max_size_mb=0))["model"] == "int8"
    assert (
        choose(ROWS, Params(max_p95_latency_ms=0, max_size_mb=0, prefer_smaller_within=0))["model"]
        == "finetuned"
    )
    # A latency cap of 30 ms rules out the float model even without the size preference.
    assert (
        choose(ROWS, Params(max_p95_latency_ms=30, max_size_mb=0, prefer_smaller_within=0))["model"] == "int8"
    )
    # Caps of 10 ms and 20 MB leave the distilled model and the baseline, which scores lower.
    assert choose(ROWS, Params(max_p95_latency_ms=10, max_size_mb=20))["model"] == "distilled"
    assert violations(ROWS[0], Params(max_p95_latency_ms=30, max_size_mb=20)) == [
        "p95 latency 40.0 ms > 30 ms",
        "size 21.80 MB > 20 MB",
    ]
    with pytest.raises(NoCandidate, match="no model meets the constraints"):
        choose(ROWS, Params(max_p95_latency_ms=5, max_size_mb=0))


def test_the_baseline_is_a_candidate_under_the_same_constraints():
    # Best on the objective and within the limits: the baseline is chosen, whatever its kind.
    assert choose(BASELINE_WINS, Params())["model"] == "baseline"
    assert violations(BASELINE_WINS[3], Params()) == []
    # The same limits apply to it as to the others: a 5 ms latency cap rules it out ...
    assert violations(BASELINE_WINS[3], Params(max_p95_latency_ms=5)) == ["p95 latency 6.0 ms > 5 ms"]
    # ... and a size cap rules out a baseline too big for it (then int8 wins, as without it).
    heavy = {**BASELINE_WINS[3], "size_bytes": 30_000_000}
    assert violations(heavy, Params(max_size_mb=25)) == ["size 30.00 MB > 25 MB"]
    assert choose([*ROWS[:3], heavy], Params(max_size_mb=25))["model"] == "int8"
    # ... and the gate compares it with the model promoted before like any other.
    promoted = {"model": "finetuned", "scores": {"macro_f1": 0.90}}
    with pytest.raises(GateRefused, match="refusing to promote 'baseline'"):
        gate(choose(BASELINE_WINS, Params()), promoted, Params())


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


def test_run_ships_the_baseline_folder_when_it_wins(stage):
    """The baseline wins under the objective: its saved folder (evaluate's baseline/) becomes
    model/, byte for byte, loadable by the server; every row keeps its verdict."""
    from llm.formats import BASELINE_FILES
    from llm.served import load_model, model_version
    from tests.baseline_fixtures import make_baseline_dir

    evaluation = stage / "evaluate"
    (evaluation / "models.json").write_text(
        json.dumps({"task_split": "test", "examples": 10, "models": BASELINE_WINS})
    )
    folder = make_baseline_dir(evaluation / "baseline")
    (evaluation / "predictions" / "baseline.jsonl").write_text('{"id": "b1"}\n')
    out, promoted = stage / "select", stage / "promoted.json"
    params = Params(max_p95_latency_ms=30)
    metrics = run(
        str(evaluation), str(stage / "finetune"), str(stage / "compress"), str(out), params, str(promoted)
    )

    assert metrics["chosen"] == "baseline" and metrics["macro_f1"] == pytest.approx(0.85)
    assert sorted(p.name for p in (out / "model").iterdir()) == sorted([*BASELINE_FILES, "MODEL_CARD.md"])
    for name in BASELINE_FILES:
        assert (out / "model" / name).read_bytes() == (folder / name).read_bytes()
    served = load_model(out / "model")
    assert served.version == model_version(folder) and served.labels == ["negative", "positive"]
    assert (out / "predictions.jsonl").read_text() == '{"id": "b1"}\n'  # deploy's smoke reference
    decision = json.loads((out / "decision.json").read_text())
    assert decision["chosen"] == "baseline" and decision["kind"] == "tfidf-logreg"
    verdicts = {r["model"]: r["violations"] for r in decision["models"]}
    assert verdicts == {
        "finetuned": ["p95 latency 40.0 ms > 30 ms"],
        "int8": [],
        "distilled": [],
        "baseline": [],
    }
    assert "| baseline | tfidf-logreg |" in (out / "decision.md").read_text()
    assert "p95 latency 40.0 ms > 30 ms" in (out / "decision.md").read_text()
    card = (out / "MODEL_CARD.md").read_text()
    assert "TF-IDF" in card and "vocabulary.json" in card and "megatron" not in card
    assert json.loads(promoted.read_text())["model"] == "baseline"


def test_an_empty_record_is_nothing_promoted(tmp_path):
    # The record a fresh clone holds (models/promoted.json is tracked as {}).
    record = tmp_path / "promoted.json"
    record.write_text("{}\n")
    assert read_promoted(record) is None
    assert gate(ROWS[1], read_promoted(record), Params()) == "no model promoted before"


def test_the_default_tolerance_is_above_the_seed_noise():
    assert Params().tolerance > 0.0136  # the range of macro-F1 over fine-tuning seeds 0/1/2 (params doc)


# ---- the generator's choice ---------------------------------------------------------------------


def qa_row(name, f1, ms=10.0, quantization="none", em=None):
    return {
        "model": name,
        "kind": "baseline" if name == "frequent_candidate" else "generator",
        "quantization": None if name == "frequent_candidate" else quantization,
        "exact_match": f1 - 0.05 if em is None else em,
        "f1": f1,
        "perplexity": None if name == "frequent_candidate" else 20.0,
        "tokens_per_s": None if name == "frequent_candidate" else 1000.0 / ms,
        "ms_per_token": None if name == "frequent_candidate" else ms,
    }


def qa_table(baseline=0.30, pretrained=0.10, sft=0.60, int8=0.59, sft_ms=10.0, int8_ms=6.0):
    return {
        "split": "test",
        "questions": 50,
        "models": [
            qa_row("frequent_candidate", baseline),
            qa_row("pretrained", pretrained),
            qa_row("sft", sft, sft_ms),
            qa_row("sft-int8", int8, int8_ms, "int8-dynamic"),
        ],
    }


def test_the_generator_gate_prefers_int8_within_tolerance_and_faster():
    decision = choose_generator(qa_table(), GenerativeParams(tolerance=0.02))
    assert decision["shipped"] and decision["chosen"] == "sft-int8"
    assert decision["quantization"] == "int8-dynamic" and "within 0.02" in decision["reason"]
    # Beyond the tolerance the float model wins; as good but slower, int8 loses too.
    assert choose_generator(qa_table(int8=0.55), GenerativeParams(tolerance=0.02))["chosen"] == "sft"
    assert choose_generator(qa_table(int8=0.60, int8_ms=12.0), GenerativeParams())["chosen"] == "sft"
    # The speed limit, and the objective named by the params.
    assert (
        choose_generator(
            qa_table(sft_ms=30.0, int8_ms=25.0, int8=0.50), GenerativeParams(max_ms_per_token=28)
        )["chosen"]
        == "sft-int8"
    )
    table = qa_table()
    table["models"][2]["exact_match"] = 0.9  # sft's EM far above int8's 0.54
    assert choose_generator(table, GenerativeParams(objective="exact_match"))["chosen"] == "sft"
    # The pretrained row is never shipped, however good.
    assert choose_generator(qa_table(pretrained=0.99), GenerativeParams())["chosen"] == "sft-int8"
    # The ranked objective (the most likely candidate): here only sft beats the baseline on it.
    table = qa_table(baseline=0.30, sft=0.20, int8=0.20)
    for row, ranked in zip(table["models"], (0.30, 0.10, 0.40, 0.28), strict=True):
        row["ranked_f1"] = ranked
    assert not choose_generator(table, GenerativeParams())["shipped"]
    ranked = choose_generator(table, GenerativeParams(objective="ranked_f1"))
    assert ranked["chosen"] == "sft" and ranked["score"] == 0.40 and ranked["objective"] == "ranked_f1"


def test_no_generator_is_shipped_when_it_does_not_beat_the_baseline():
    decision = choose_generator(qa_table(baseline=0.62), GenerativeParams())
    assert not decision["shipped"] and decision["chosen"] is None
    assert (
        "no generator shipped" in decision["reason"]
        and "frequent-candidate baseline 0.6200" in decision["reason"]
    )
    # A required gain above the baseline counts too.
    assert not choose_generator(qa_table(baseline=0.55), GenerativeParams(min_gain_over_baseline=0.06))[
        "shipped"
    ]
    # Only int8 is below the baseline: the float model ships.
    assert (
        choose_generator(qa_table(baseline=0.595, int8=0.59), GenerativeParams(tolerance=0.05))["chosen"]
        == "sft"
    )


def test_generative_params_are_checked():
    with pytest.raises(ParamsError, match="select.generative.tolerance: must be within"):
        from_dict(Params, {"generative": {"tolerance": 2}}, "select")
    with pytest.raises(ParamsError, match="select.generative.objective"):
        from_dict(Params, {"generative": {"objective": "bleu"}}, "select")


@pytest.fixture(scope="module")
def sft_folder(tmp_path_factory):
    from tests.task_fixtures import make_generator, make_tokenized

    root = tmp_path_factory.mktemp("sft")
    return make_generator(root / "sft", make_tokenized(root / "tokenize"), max_new_tokens=5)


def test_run_ships_the_chosen_generator_and_records_it(stage, sft_folder):
    (stage / "evaluate" / "qa.json").write_text(json.dumps(qa_table()))
    (stage / "evaluate" / "generations.jsonl").write_text('{"id": "q1", "prompt": "p", "output": "o"}\n')
    out = stage / "select"
    metrics = run(
        str(stage / "evaluate"),
        str(stage / "finetune"),
        str(stage / "compress"),
        str(out),
        Params(),
        "",
        sft=str(sft_folder),
    )
    assert metrics["chosen"] == "int8"  # the classifier's choice is untouched
    assert metrics["generator_shipped"] and metrics["generator"] == "sft-int8"
    assert metrics["generator_f1"] == pytest.approx(0.59)
    config = json.loads((out / "generator" / "generator.json").read_text())
    assert (
        config["quantization"] == "int8-dynamic"
        and config["max_new_tokens"] == 5
        and config["stop"] == ["\n"]
    )
    assert (out / "generator" / "model.json").read_bytes() == (sft_folder / "model.json").read_bytes()
    assert sorted(p.name for p in (out / "generator" / "checkpoint").iterdir()) == sorted(
        p.name for p in (sft_folder / "checkpoint").iterdir()
    )
    assert (out / "generations.jsonl").read_text().startswith('{"id": "q1"')
    decision = json.loads((out / "decision.json").read_text())
    assert decision["generator"]["chosen"] == "sft-int8" and len(decision["generator"]["models"]) == 4
    for text in ((out / "decision.md").read_text(), (out / "MODEL_CARD.md").read_text()):
        assert "## Generator" in text and "Shipped: **sft-int8** (quantization int8-dynamic)" in text


def test_run_records_no_generator_and_still_ships_the_classifier(stage, sft_folder):
    (stage / "evaluate" / "qa.json").write_text(json.dumps(qa_table(baseline=0.7)))
    out = stage / "select"
    metrics = run(
        str(stage / "evaluate"),
        str(stage / "finetune"),
        str(stage / "compress"),
        str(out),
        Params(),
        "",
        sft=str(sft_folder),
    )
    assert metrics["chosen"] == "int8" and metrics["generator_shipped"] is False
    # generator/ (what DVC tracks) holds the reason, not a generator: nothing loads it as one.
    assert sorted(p.name for p in (out / "generator").iterdir()) == ["NOT_SHIPPED.json"]
    assert "baseline" in json.loads((out / "generator" / "NOT_SHIPPED.json").read_text())["reason"]
    assert (out / "generations.jsonl").read_text() == "" and (out / "model" / "classifier.json").is_file()
    decision = json.loads((out / "decision.json").read_text())
    assert "does not beat the frequent-candidate baseline" in decision["generator"]["reason"]
    assert "no generator shipped" in (out / "MODEL_CARD.md").read_text()
    # With select.generative.required the whole selection is refused, naming why.
    params = from_dict(Params, {"generative": {"required": True}}, "select")
    with pytest.raises(NoGenerator, match="does not beat the frequent-candidate baseline"):
        run(
            str(stage / "evaluate"),
            str(stage / "finetune"),
            str(stage / "compress"),
            str(stage / "s2"),
            params,
            "",
            sft=str(sft_folder),
        )
    assert not (stage / "s2").exists()
    # Without --sft (or without qa.json) no generator is judged, as before.
    plain = run(
        str(stage / "evaluate"),
        str(stage / "finetune"),
        str(stage / "compress"),
        str(stage / "s3"),
        Params(),
        "",
    )
    assert "generator_shipped" not in plain
    assert json.loads((stage / "s3" / "decision.json").read_text())["generator"] is None
    assert not (stage / "s3" / "generator").exists()
