"""deploy: the release bundle is smoke-tested through the server's loader and records its data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common.io import write_json, write_jsonl
from components.common.params import from_dict
from components.deploy.core import ReleaseError, run
from components.deploy.params import Params
from llm.served import load_model, model_version
from tests.serving_fixtures import shared_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return shared_model_dir(tmp_path_factory)


def _reference(path: Path, model_dir: Path, flip: bool = False) -> Path:
    texts = ["a fine film", "dull and long", "the best acting of the year", "i walked out"]
    labels = load_model(model_dir).predict(texts).labels
    if flip:
        labels = ["positive" if x == "negative" else "negative" for x in labels]
    write_jsonl(
        path,
        [
            {"id": str(i), "text": t, "prediction": p}
            for i, (t, p) in enumerate(zip(texts, labels, strict=False))
        ],
    )
    return path


def test_release_bundle_matches_the_model_and_records_the_dataset(tmp_path: Path, model_dir: Path):
    ingest = tmp_path / "ingest"
    write_json(ingest / "dataset.json", {"version": "abc123", "files": {"raw.csv": "abc123"}})
    out = tmp_path / "deploy"
    metrics = run(
        str(model_dir),
        str(out),
        Params(),
        reference=str(_reference(tmp_path / "ref.jsonl", model_dir)),
        dataset=str(ingest),
    )
    release = json.loads((out / "release.json").read_text())
    assert release["version"] == model_version(model_dir) == load_model(out / "model").version
    assert release["dataset"]["version"] == "abc123"
    assert metrics["smoke_examples"] == 4 and metrics["smoke_agreement"] == 1.0


def test_a_model_that_does_not_reproduce_its_evaluation_is_refused(tmp_path: Path, model_dir: Path):
    out = tmp_path / "deploy"
    reference = _reference(tmp_path / "ref.jsonl", model_dir, flip=True)
    with pytest.raises(ReleaseError, match="refusing to release"):
        run(str(model_dir), str(out), Params(), reference=str(reference))
    assert not out.exists()  # nothing half-released


def test_smoke_examples_must_not_be_negative():
    with pytest.raises(ValueError, match="deploy.smoke_examples"):
        from_dict(Params, {"smoke_examples": -1}, "deploy")
