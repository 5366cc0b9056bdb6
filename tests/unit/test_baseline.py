"""The TF-IDF baseline as a model folder (llm.baseline): it labels and scores held-out texts as
scikit-learn does, holds only JSON and safetensors, loads without pickle, scikit-learn or torch,
and is served on POST /predict through the real server code path."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from llm.baseline import load_baseline, save_baseline
from llm.formats import BASELINE_FILES, TFIDF_LOGREG, model_files, model_kind
from llm.served import load_model, model_version
from tests.baseline_fixtures import EDGE_TEXTS, fit_baseline, make_baseline_dir, review_texts
from tests.task_fixtures import NEGATIVE, POSITIVE

ROOT = Path(__file__).resolve().parents[2]
ATOL = 1e-12  # probabilities: the same float64 arithmetic, sums in the same order


def held_out() -> list[str]:
    return review_texts(300, seed=1)[0] + EDGE_TEXTS


def three_labels(texts: list[str], labels: list[str]) -> list[str]:
    """ "neutral" for the texts without a cue word: a three-class task (softmax probabilities)."""
    cues = {w.lower() for w in POSITIVE + NEGATIVE}
    return [lab if cues & set(t.lower().split()) else "neutral" for t, lab in zip(texts, labels, strict=True)]


@pytest.mark.parametrize(
    ("settings", "classes"),
    [
        ({}, 2),  # the evaluate stage's pipeline: word 1-2-grams, min_df 2, sublinear tf, l2, liblinear
        ({"ngram_range": (2, 3), "sublinear_tf": False, "norm": "l1"}, 2),
        ({"ngram_range": (1, 1), "use_idf": False, "norm": None, "lowercase": False, "min_df": 1}, 2),
        ({"token_pattern": r"(?u)\b(\w+)\b", "max_features": 60}, 2),  # one group; a capped vocabulary
        ({"solver": "lbfgs"}, 3),  # multiclass: softmax
    ],
)
def test_saved_baseline_labels_and_scores_as_scikit_learn(tmp_path, settings, classes):
    texts, labels = review_texts(400, seed=0)
    if classes == 3:
        labels = three_labels(texts, labels)
    model = fit_baseline(texts, labels, **settings)
    config = save_baseline(model, tmp_path / "baseline")
    loaded = load_baseline(tmp_path / "baseline")
    test = held_out()

    assert loaded.labels == [str(c) for c in model.classes_] and len(loaded.labels) == classes
    assert config.probability == ("softmax" if classes == 3 else "logistic")
    analyzer = model[0].build_analyzer()
    assert [loaded.analyze(t) for t in test] == [analyzer(t) for t in test]
    expected = model.predict_proba(test)
    got = loaded.predict_proba(test)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert expected[:, 0].std() > 0.01  # varied probabilities, not a saturated 0/1 model
    predicted, scores = loaded.predict(test, batch_size=7)  # batches do not change the answers
    assert predicted == [str(p) for p in model.predict(test)]
    index = [loaded.labels.index(p) for p in predicted]
    np.testing.assert_allclose(scores, expected[np.arange(len(test)), index], rtol=0, atol=ATOL)
    # Texts with no vocabulary term (the empty text, punctuation) get the intercept's answer, also
    # when no text of the call has one (a served micro-batch of such texts alone).
    assert predicted[len(test) - len(EDGE_TEXTS)] == str(model.predict([""])[0])
    unknown = ["", "!!! ???", "zzz qqq unknownword"]
    np.testing.assert_allclose(loaded.predict_proba(unknown), model.predict_proba(unknown), rtol=0, atol=ATOL)
    assert loaded.predict(unknown[2:])[0] == [str(p) for p in model.predict(unknown[2:])]


def test_the_folder_is_json_and_safetensors_only(tmp_path):
    folder = make_baseline_dir(tmp_path / "baseline")
    assert sorted(p.name for p in folder.iterdir()) == sorted(BASELINE_FILES)
    config = json.loads((folder / "classifier.json").read_text())
    assert config["kind"] == TFIDF_LOGREG and config["labels"] == ["negative", "positive"]
    terms = json.loads((folder / "vocabulary.json").read_text())["terms"]
    assert len(terms) == config["features"] and "good" in terms and "great film" in terms
    # A safetensors file: an 8-byte little-endian header length, a JSON header, raw float64 data.
    raw = (folder / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert {k: (v["dtype"], v["shape"]) for k, v in tensors.items()} == {
        "idf": ("F64", [len(terms)]),
        "coef": ("F64", [1, len(terms)]),
        "intercept": ("F64", [1]),
    }
    assert not any(p.read_bytes().startswith(b"\x80") for p in folder.iterdir())  # no pickle stream


def test_loading_and_serving_needs_no_pickle_no_scikit_learn_no_torch(tmp_path):
    """A fresh interpreter with every pickle entry point refused loads and answers; afterwards
    neither scikit-learn, joblib, torch nor megatron has been imported."""
    folder = make_baseline_dir(tmp_path / "baseline")
    script = """
import json, pickle, sys

def refuse(*args, **kwargs):
    raise AssertionError("pickle was called")

pickle.load = pickle.loads = pickle.Unpickler = refuse
from llm.served import load_model

served = load_model(sys.argv[1])
out = served.predict(["a good film", "dull and boring", ""])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"sklearn", "joblib", "torch", "megatron", "scipy"})
print(json.dumps({"labels": out.labels, "scores": out.scores, "tokens": out.tokens, "heavy": heavy}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["heavy"] == []
    expected = load_baseline(folder).predict(["a good film", "dull and boring", ""])
    assert answer["labels"] == expected[0]
    assert answer["scores"] == pytest.approx(expected[1], abs=ATOL)
    assert answer["tokens"] == [2, 3, 0]  # words of the token pattern: "a" is no word for it


def test_one_load_interface_dispatches_on_the_folder_kind(tmp_path):
    folder = make_baseline_dir(tmp_path / "baseline")
    assert model_kind(folder) == TFIDF_LOGREG and model_files(folder) == BASELINE_FILES
    served = load_model(folder, batch_size=4)
    assert served.labels == ["negative", "positive"]
    # The version hashes the folder's own files, whatever the folder is called ...
    copy = Path(shutil.copytree(folder, tmp_path / "elsewhere"))
    assert served.version == model_version(folder) == model_version(copy)
    # ... the vocabulary among them.
    terms = json.loads((copy / "vocabulary.json").read_text())
    (copy / "vocabulary.json").write_text(json.dumps({"terms": list(reversed(terms["terms"]))}))
    assert model_version(copy) != served.version
    out = served.predict(["Good film!", "a b", "boring boring plot"])
    assert out.tokens == [2, 0, 3]  # the analyzer's words, the whole text (no truncation)
    assert out.labels == load_baseline(folder).predict(["Good film!", "a b", "boring boring plot"])[0]

    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "classifier.json").write_text('{"kind": "random-forest"}')
    with pytest.raises(ValueError, match="unknown model kind 'random-forest'"):
        load_model(tmp_path / "odd")
    (copy / "vocabulary.json").unlink()
    with pytest.raises(FileNotFoundError, match="no vocabulary.json"):
        load_model(copy)


def test_the_gpt_loader_refuses_a_baseline_folder_by_name(tmp_path):
    from llm.classifier import load_classifier

    folder = make_baseline_dir(tmp_path / "baseline")
    with pytest.raises(ValueError, match="a tfidf-logreg model folder, not a GPT classifier"):
        load_classifier(folder)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"analyzer": "char_wb", "ngram_range": (2, 3)}, "analyzer='char_wb'"),
        ({"stop_words": "english"}, "stop_words='english'"),
        ({"strip_accents": "unicode"}, "strip_accents='unicode'"),
        ({"binary": True}, "binary=True"),
        ({"dtype": np.float32}, "dtype=float32"),
    ],
)
def test_save_refuses_what_the_loader_does_not_reimplement(tmp_path, settings, named):
    texts, labels = review_texts(200)
    model = fit_baseline(texts, labels, **settings)
    with pytest.raises(ValueError, match=re.escape(f"{named} is not supported")):
        save_baseline(model, tmp_path / "baseline")
    assert not (tmp_path / "baseline" / "classifier.json").exists()


def test_the_server_answers_predict_with_the_baseline(tmp_path):
    """POST /predict, /healthz and the prediction log through serving.app on the baseline folder:
    the answers are scikit-learn's, the logged token counts the analyzer's words."""
    from fastapi.testclient import TestClient

    from monitoring.window import read_window
    from serving.app import create_app
    from serving.prediction_log import PredictionLog
    from serving.settings import Settings

    texts, labels = review_texts(400, seed=0)
    model = fit_baseline(texts, labels)
    save_baseline(model, tmp_path / "baseline")
    served = load_model(tmp_path / "baseline")
    log_uri = str(tmp_path / "log")
    log = PredictionLog(log_uri, flush_rows=10_000, flush_seconds=60.0)
    batch = ["GREAT film, great music", "dull and boring plot", "the story"]
    with TestClient(create_app(served, Settings(), log)) as client:
        health = client.get("/healthz").json()
        single = client.post("/predict", json={"text": "a wonderful, lovely film"})
        many = client.post("/predict", json={"texts": batch})
    assert health["labels"] == ["negative", "positive"] and health["model_version"] == served.version
    assert single.status_code == 200 and many.status_code == 200
    assert single.headers["x-model-version"] == served.version == single.json()["model_version"]
    want = model.predict_proba(["a wonderful, lovely film", *batch])
    got = [single.json(), *many.json()["predictions"]]
    assert [g["label"] for g in got] == [str(p) for p in model.predict(["a wonderful, lovely film", *batch])]
    assert [g["score"] for g in got] == pytest.approx(want.max(axis=1), abs=1e-9)
    frame = read_window(log_uri, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)).frame
    rows = frame.sort_values(["request_id", "item"])
    assert sorted(rows["tokens"].tolist()) == sorted([3, 4, 4, 2])  # words per text
    assert set(rows["model_version"]) == {served.version}
