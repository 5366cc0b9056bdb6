"""evaluate: metric helpers on hand-computed examples; perplexity windows; the stage end to end."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from components.common.params import ParamsError, from_dict
from components.evaluate.core import (
    baseline_predictor,
    classification_metrics,
    lm_windows,
    markdown_table,
    run,
    stream_limit,
    train_baseline,
)
from components.evaluate.params import Params
from llm.scoring import (
    accuracy,
    confusion_counts,
    expected_calibration_error,
    macro_f1,
    per_class,
    percentile,
    perplexity,
)
from tests.task_fixtures import make_finetuned, make_task

ACTUAL = ["a", "a", "b", "b", "b"]
PREDICTED = ["a", "b", "b", "b", "a"]


def test_confusion_and_accuracy_by_hand():
    # rows = actual, columns = predicted: a->a 1, a->b 1, b->a 1, b->b 2
    assert confusion_counts(ACTUAL, PREDICTED, ["a", "b"]) == [[1, 1], [1, 2]]
    assert accuracy(ACTUAL, PREDICTED) == pytest.approx(3 / 5)
    assert accuracy([], []) == 0.0


def test_per_class_and_macro_f1_by_hand():
    scores = per_class(ACTUAL, PREDICTED, ["a", "b"])
    # a: tp 1, predicted 2, actual 2 -> P = R = F1 = 1/2; b: tp 2, predicted 3, actual 3 -> 2/3.
    assert scores["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert scores["b"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert macro_f1(ACTUAL, PREDICTED) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_macro_f1_weighs_a_missed_minority_class():
    # Always predicting the majority: accuracy 0.8, but the minority class has F1 0 (never
    # predicted: precision 0 by the zero-division convention), so macro-F1 is far lower.
    actual = ["pos"] * 8 + ["neg"] * 2
    predicted = ["pos"] * 10
    assert accuracy(actual, predicted) == pytest.approx(0.8)
    assert per_class(actual, predicted, ["neg", "pos"])["neg"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 2,
    }
    assert macro_f1(actual, predicted, ["neg", "pos"]) == pytest.approx((0 + 2 * 0.8 / 1.8) / 2)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="'c' is not one of"):
        confusion_counts(["a"], ["c"], ["a", "b"])


def test_perplexity_is_exp_of_mean_loss():
    assert perplexity(4 * math.log(10), 4) == pytest.approx(10.0)
    assert perplexity(0.0, 3) == 1.0
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


def test_lm_windows_score_each_token_once():
    stream = np.arange(10)
    w = lm_windows(stream, window=3, max_tokens=100)
    # inputs w[:, :-1] predict labels w[:, 1:]; windows share their boundary token.
    assert w.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert lm_windows(stream, window=3, max_tokens=6).shape == (2, 4)  # at most 6 tokens scored
    assert lm_windows(stream, window=3, max_tokens=2).shape == (1, 4)  # but at least one window
    assert stream_limit(3, 6) == 7 and stream_limit(3, 2) == 4
    assert lm_windows(np.arange(5), window=8, max_tokens=100).tolist() == [[0, 1, 2, 3, 4]]
    with pytest.raises(ValueError):
        lm_windows(np.arange(1), window=3, max_tokens=10)


def test_classification_metrics_bundle():
    m = classification_metrics(ACTUAL, PREDICTED, ["a", "b"], majority="b")
    assert m["confusion"] == {"a": {"a": 1, "b": 1}, "b": {"a": 1, "b": 2}}
    assert m["majority_accuracy"] == pytest.approx(3 / 5)
    assert m["examples"] == 5


def test_expected_calibration_error_by_hand():
    # Bin [0.9, 1.0]: confidences 0.95, 0.95, both right -> |1 - 0.95| = 0.05, weight 2/4.
    # Bin [0.6, 0.7): confidences 0.6, 0.6, one right -> |0.5 - 0.6| = 0.1, weight 2/4.
    ece = expected_calibration_error([0.95, 0.95, 0.6, 0.6], [True, True, True, False], bins=10)
    assert ece == pytest.approx(0.5 * 0.05 + 0.5 * 0.1)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0  # 1.0 falls in the last bin
    assert expected_calibration_error([], []) == 0.0


def test_percentile_interpolates_like_numpy():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    for q in (0, 50, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([], 95) == 0.0


def test_markdown_table_has_one_row_per_model():
    rows = [
        {
            "model": "finetuned",
            "accuracy": 0.8,
            "macro_f1": 0.79,
            "ece": 0.05,
            "latency_p50_ms": 5.0,
            "latency_p95_ms": 9.0,
            "throughput_per_s": 300.0,
            "size_bytes": 21_000_000,
            "parameters": 5_000_000,
        },
        {
            "model": "baseline",
            "accuracy": 0.75,
            "macro_f1": 0.74,
            "ece": 0.1,
            "latency_p50_ms": 0.5,
            "latency_p95_ms": 0.9,
            "throughput_per_s": 9000.0,
            "size_bytes": 1_000_000,
            "parameters": 40_001,
        },
    ]
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model | accuracy | macro-F1")
    assert lines[2] == "| finetuned | 0.8000 | 0.7900 | 0.0500 | 5.0 | 9.0 | 300 | 21.00 | 5,000,000 |"


def test_tfidf_baseline_learns_the_separable_task(tmp_path):
    records = [json.loads(line) for line in make_task(tmp_path / "task.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    test = [r for r in records if r["split"] == "test"]
    params = Params(baseline_min_df=1)
    predict = baseline_predictor(
        train_baseline([r["text"] for r in train], [r["label"] for r in train], params)
    )
    labels, scores = predict([r["text"] for r in test])
    assert accuracy([r["label"] for r in test], labels) >= 0.9  # praise vs complaint words
    assert all(0.5 <= s <= 1.0 for s in scores)


def test_params_are_checked():
    with pytest.raises(ParamsError, match="evaluate.max_tokens: must be > 0"):
        from_dict(Params, {"max_tokens": 0}, "evaluate")
    with pytest.raises(ParamsError, match="evaluate.task_split: expected one of"):
        from_dict(Params, {"task_split": "holdout"}, "evaluate")


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory):
    return make_finetuned(tmp_path_factory.mktemp("evaluate"))


def test_evaluate_stage_end_to_end(stage_inputs, tmp_path):
    root = stage_inputs
    out = tmp_path / "evaluate"
    params = from_dict(Params, {"max_tokens": 500, "batch_size": 4}, "evaluate")
    metrics = run(
        str(root / "pretrain"),
        str(root / "tokenize"),
        str(root / "finetune"),
        str(root / "task.jsonl"),
        str(out),
        params,
    )
    # Perplexity of an untrained tiny GPT: finite, above 1, and near the (padded) vocabulary size
    # that a uniform guess would give.
    assert math.isfinite(metrics["perplexity"]) and metrics["perplexity"] > 1
    assert metrics["perplexity"] < 2 * 320
    assert metrics["lm_tokens"] == 480  # 500 // 32 windows of 32 tokens

    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (root / "task.jsonl").read_text().splitlines()]
    test = [r for r in test if r["split"] == "test"]
    assert [p["id"] for p in predictions] == [r["id"] for r in test]
    assert all(set(p) == {"id", "text", "label", "prediction", "score"} for p in predictions)
    assert all(0.5 <= p["score"] <= 1.0 for p in predictions)  # probability of the chosen label (2 classes)
    with open(out / "confusion.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"actual": p["label"], "predicted": p["prediction"]} for p in predictions]
    actual, predicted = [p["label"] for p in predictions], [p["prediction"] for p in predictions]
    assert metrics["accuracy"] == pytest.approx(accuracy(actual, predicted), abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx(
        macro_f1(actual, predicted, ["negative", "positive"]), abs=1e-6
    )
    # The fine-tuned classifier beats always answering the majority label.
    assert metrics["accuracy"] > metrics["majority_accuracy"] + 0.1
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_evaluate_scores_candidates_and_the_baseline(stage_inputs, tmp_path):
    from components.compress.core import run as compress
    from components.compress.params import Params as CompressParams

    root = stage_inputs
    compress(
        str(root / "finetune"),
        str(root / "tokenize"),
        str(root / "task.jsonl"),
        str(root / "compress"),
        CompressParams(variants=["int8"]),
    )
    out = tmp_path / "evaluate"
    params = from_dict(
        Params, {"max_tokens": 64, "latency_requests": 5, "throughput_examples": 16}, "evaluate"
    )
    metrics = run(
        str(root / "pretrain"),
        str(root / "tokenize"),
        str(root / "finetune"),
        str(root / "task.jsonl"),
        str(out),
        params,
        variants=str(root / "compress"),
    )
    table = json.loads((out / "models.json").read_text())
    rows = {r["model"]: r for r in table["models"]}
    assert list(rows) == ["finetuned", "int8", "baseline"]
    for r in rows.values():
        assert {
            "accuracy",
            "macro_f1",
            "per_class",
            "ece",
            "latency_p50_ms",
            "latency_p95_ms",
            "throughput_per_s",
            "size_bytes",
            "parameters",
        } <= set(r)
        assert r["latency_p95_ms"] >= r["latency_p50_ms"] > 0 and 0 <= r["ece"] <= 1
    # Top-level metrics stay the fine-tuned model's; the int8 row scores like it; the baseline is
    # computed in the same run and does well on this separable task.
    assert metrics["accuracy"] == pytest.approx(rows["finetuned"]["accuracy"], abs=1e-6)
    assert metrics["ece"] == pytest.approx(rows["finetuned"]["ece"], abs=1e-6)
    assert abs(rows["int8"]["accuracy"] - rows["finetuned"]["accuracy"]) <= 0.05
    assert rows["int8"]["size_bytes"] < rows["finetuned"]["size_bytes"]
    assert rows["int8"]["parameters"] == rows["finetuned"]["parameters"]
    assert (
        rows["baseline"]["kind"] == "baseline" and rows["baseline"]["accuracy"] > metrics["majority_accuracy"]
    )
    assert metrics["models"]["baseline"]["macro_f1"] == pytest.approx(rows["baseline"]["macro_f1"], abs=1e-6)
    assert len((out / "table.md").read_text().splitlines()) == 2 + 3
    # Each model folder's predictions, for the smoke test of whichever one is shipped.
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [
        "baseline.jsonl",
        "finetuned.jsonl",
        "int8.jsonl",
    ]
    assert (out / "predictions" / "finetuned.jsonl").read_text() == (out / "predictions.jsonl").read_text()
    # The baseline is a model folder the server loads (JSON + safetensors, no pickle), and its
    # saved predictions are what that folder predicts.
    from llm.served import load_model

    assert sorted(p.name for p in (out / "baseline").iterdir()) == [
        "classifier.json",
        "model.safetensors",
        "vocabulary.json",
    ]
    served = load_model(out / "baseline")
    logged = [json.loads(line) for line in (out / "predictions" / "baseline.jsonl").read_text().splitlines()]
    got = served.predict([r["text"] for r in logged])
    assert got.labels == [r["prediction"] for r in logged]


# ---- the generative (QA) evaluation -------------------------------------------------------------

QA_WORDS = ("good", "bad", "film", "plot", "great", "boring", "actor", "story")


def make_qa(path, n_test: int = 6, seed: int = 0):
    """A qa.jsonl (C1 rows) whose answer is always the most frequent candidate of the passage, so
    the frequency baseline answers every question right and an untrained GPT does not."""
    import random

    from llm.qa import format_prompt, format_response

    rng = random.Random(seed)
    rows = []
    for split, n in (("train", 4), ("test", n_test)):
        for i in range(n):
            answer, other = rng.sample(["Alice", "Bob", "Carol", "Dave"], 2)
            words = " ".join(rng.choice(QA_WORDS) for _ in range(6))
            passage = f"{answer} saw a {words} film. {answer} liked it. {other} did not."
            question = f"@placeholder liked the {rng.choice(QA_WORDS)} film, {other} said."
            rows.append(
                {
                    "id": f"{split}-{i}",
                    "article_id": f"a-{split}-{i}",
                    "split": split,
                    "prompt": format_prompt(passage, question),
                    "response": format_response(answer),
                    "question": question,
                    "answer": answer,
                    "candidates": [other, answer],
                }
            )
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="module")
def qa_inputs(stage_inputs):
    from tests.task_fixtures import make_generator

    root = stage_inputs
    if not (root / "sft").exists():
        make_generator(root / "sft", root / "tokenize", seed=1, max_new_tokens=4)
        make_qa(root / "qa.jsonl")
    return root


def test_qa_params_are_checked():
    with pytest.raises(ParamsError, match="evaluate.qa.batch_size: must be > 0"):
        from_dict(Params, {"qa": {"batch_size": 0}}, "evaluate")
    with pytest.raises(ParamsError, match="evaluate.qa"):
        from_dict(Params, {"qa": {"questions": 3}}, "evaluate")


def test_passage_of_leaves_the_question_out():
    from components.evaluate.generative import passage_of
    from llm.qa import format_prompt

    assert (
        passage_of(format_prompt("Ann met Bob. Ann left.", "@placeholder met Bob"))
        == "Passage: Ann met Bob. Ann left."
    )


def test_evaluate_writes_the_qa_table_with_its_baseline_int8_row_and_generations(qa_inputs, tmp_path):
    root = qa_inputs
    out = tmp_path / "evaluate"
    params = from_dict(
        Params,
        {
            "max_tokens": 200,
            "batch_size": 4,
            "baseline": False,
            "latency_requests": 5,
            "throughput_examples": 8,
            "qa": {"max_questions": 5, "batch_size": 2},
        },
        "evaluate",
    )
    metrics = run(
        str(root / "pretrain"),
        str(root / "tokenize"),
        str(root / "finetune"),
        str(root / "task.jsonl"),
        str(out),
        params,
        sft=str(root / "sft"),
        qa=str(root / "qa.jsonl"),
    )
    table = json.loads((out / "qa.json").read_text())
    rows = {r["model"]: r for r in table["models"]}
    assert [r["model"] for r in table["models"]] == ["frequent_candidate", "pretrained", "sft", "sft-int8"]
    assert table["questions"] == 5 and table["split"] == "test" and table["max_new_tokens"] == 4
    # The baseline is measured in this run: the fixture's answer is always the most frequent candidate.
    assert rows["frequent_candidate"]["exact_match"] == 1.0 and rows["frequent_candidate"]["f1"] == 1.0
    assert rows["frequent_candidate"]["perplexity"] is None
    # Its choice is a candidate, so its ranked scores are its scores.
    assert rows["frequent_candidate"]["ranked_exact_match"] == rows["frequent_candidate"]["ranked_f1"] == 1.0
    for name in ("pretrained", "sft", "sft-int8"):
        row = rows[name]
        assert 0.0 <= row["exact_match"] <= row["f1"] + 1e-9 <= 1.0 + 1e-9
        # A ranked answer is always one of the passage's entities: a whole-answer F1 of 0 or 1
        # here (the fixture's candidates share no word), so F1 = EM.
        assert row["ranked_exact_match"] == pytest.approx(row["ranked_f1"])
        assert 0.0 <= row["ranked_exact_match"] <= 1.0
        assert row["tokens_out"] > 0 and row["tokens_per_s"] > 0 and row["ms_per_token"] > 0
        assert math.isfinite(row["perplexity"]) and row["perplexity"] > 1
    assert rows["sft-int8"]["quantization"] == "int8-dynamic" and rows["sft"]["quantization"] == "none"
    assert rows["sft-int8"]["version"] != rows["sft"]["version"]
    # Every GPT is scored on the same held-out windows (here all of the stage's: 6 x 32 tokens), so
    # the pretrained row equals the stage's own perplexity; the sft one is another GPT (seed 1).
    assert table["perplexity_tokens"] == metrics["lm_tokens"] == 192
    assert rows["pretrained"]["perplexity"] == pytest.approx(metrics["perplexity"])
    assert rows["sft"]["perplexity"] != pytest.approx(rows["pretrained"]["perplexity"])
    # int8 runs the same checkpoint: its perplexity is close to the float one's.
    assert rows["sft-int8"]["perplexity"] == pytest.approx(rows["sft"]["perplexity"], rel=0.05)

    md = (out / "qa_table.md").read_text().splitlines()
    assert md[0].startswith("| model | EM | F1 |") and len(md) == 2 + 4
    assert md[2].startswith("| frequent_candidate | 1.0000 | 1.0000 | 1.0000 | 1.0000 | - |")

    generations = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (root / "qa.jsonl").read_text().splitlines()]
    test = [r for r in test if r["split"] == "test"][:5]
    assert [g["id"] for g in generations] == [r["id"] for r in test]
    assert all(
        set(g) == {"id", "prompt", "output", "tokens_in", "tokens_out", "ms_per_token", "finish_reason"}
        for g in generations
    )
    assert all(
        0 < g["tokens_out"] <= 4 and g["finish_reason"] in ("eos", "stop", "length") for g in generations
    )
    assert sum(g["tokens_out"] for g in generations) == rows["sft"]["tokens_out"]
    # The tiny GPT's 32-token window cuts the prompts from the left (the question stays): the
    # reference records what the model saw.
    assert all(
        r["prompt"].endswith(g["prompt"]) and g["prompt"].endswith("Answer:")
        for g, r in zip(generations, test, strict=True)
    )
    assert all(g["tokens_in"] + 4 <= 32 for g in generations)

    assert metrics["qa"]["questions"] == 5
    assert metrics["qa"]["models"]["sft"]["f1"] == pytest.approx(rows["sft"]["f1"])
    assert metrics["qa"]["models"]["frequent_candidate"]["exact_match"] == 1.0
    assert metrics["qa"]["models"]["sft"]["ranked_f1"] == pytest.approx(rows["sft"]["ranked_f1"])
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_evaluate_without_sft_writes_no_qa_files(qa_inputs, tmp_path):
    root = qa_inputs
    params = from_dict(
        Params,
        {"max_tokens": 200, "baseline": False, "latency_requests": 2, "throughput_examples": 4},
        "evaluate",
    )
    with pytest.raises(ValueError, match="both --sft and --qa"):
        run(
            str(root / "pretrain"),
            str(root / "tokenize"),
            str(root / "finetune"),
            str(root / "task.jsonl"),
            str(tmp_path / "a"),
            params,
            sft=str(root / "sft"),
        )
    metrics = run(
        str(root / "pretrain"),
        str(root / "tokenize"),
        str(root / "finetune"),
        str(root / "task.jsonl"),
        str(tmp_path / "b"),
        params,
    )
    assert "qa" not in metrics and not (tmp_path / "b" / "qa.json").exists()
