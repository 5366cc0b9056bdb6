"""clean CLI: main() on temp dirs (with --decontaminate); a bad params file exits 2 before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.clean.__main__ import main
from components.common.params import SECTIONS

# The length and exact-dedup rules only (the quality rule sets are tested in tests/unit/test_clean*.py).
BASIC = {
    "denoise": {"boilerplate_min_docs": 0},
    "language": {"enabled": False},
    "gopher_quality": {"enabled": False},
    "gopher_repetition": {"enabled": False},
    "c4": {"enabled": False},
    "fineweb": {"enabled": False},
    "outliers": {"enabled": False},
    "dedup": {"near": False},
}
LEAK = "the film is a gripping and beautifully acted drama that never loses its nerve at all"


def _params(path: Path, **clean) -> Path:
    data = {stage: {} for stage in SECTIONS}
    data["clean"] = clean
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    docs = [
        {"id": "b", "text": "the second document has plenty of words", "source": "x", "meta": {}},
        {"id": "a", "text": "the second  document has plenty of words", "source": "x", "meta": {}},
        {"id": "c", "text": "short", "source": "x", "meta": {}},
        {"id": "leak", "text": f"Critics agree: {LEAK}, they say.", "source": "x", "meta": {}},
    ]
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\nnot json\n", encoding="utf-8")
    return path


def test_main_cleans_a_file(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    evals = tmp_path / "task.jsonl"
    evals.write_text(
        json.dumps({"id": "r", "text": LEAK.capitalize() + ".", "label": "positive", "split": "test"}) + "\n"
    )
    params = _params(
        tmp_path / "params.yaml",
        min_chars=10,
        min_words=3,
        pipeline_options=["--direct_num_workers=1"],
        **BASIC,
    )
    argv = [
        "--input",
        str(corpus),
        "--output",
        str(out),
        "--params",
        str(params),
        "--decontaminate",
        str(evals),
    ]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert {k: report[k] for k in ("input", "kept", "dropped", "rejected")} == {
        "input": 5,
        "kept": 1,
        "dropped": {"contaminated": 1, "duplicate_exact": 1, "too_short": 1},
        "rejected": {"invalid_json": 1},
    }
    assert report["decontamination"] == {"eval_records": 1, "contaminated": 1}
    kept = [
        json.loads(line)
        for line in (out / "documents" / "part-00000-of-00001.jsonl").read_text().splitlines()
    ]
    assert [d["id"] for d in kept] == ["a"]
    assert json.loads((out / "metrics.json").read_text())["kept"] == 1
    assert (out / "report.md").read_text().startswith("# clean report")


def test_bad_params_exit_2_without_output(corpus: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    params = _params(tmp_path / "params.yaml", min_chars="ten")
    assert main(["--input", str(corpus), "--output", str(out), "--params", str(params)]) == 2
    assert "clean.min_chars" in capsys.readouterr().err
    assert not out.exists()


def test_bad_nested_params_exit_2(corpus: Path, tmp_path: Path, capsys) -> None:
    params = _params(tmp_path / "params.yaml", dedup={"bands": 40, "rows": 8})
    assert main(["--input", str(corpus), "--output", str(tmp_path / "out"), "--params", str(params)]) == 2
    assert "clean.dedup.bands" in capsys.readouterr().err


def test_missing_input_flag_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--output", str(tmp_path / "out")])
    assert exc.value.code == 2
