"""clean CLI: main() on temp dirs (with --decontaminate); a bad params file exits 2 before any work."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
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
ROOT = Path(__file__).resolve().parents[2]
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


# --- bad input: exit 2 with one "error:" line naming the file, no traceback, no output ------------


def _error_line(err: str) -> str:
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def _cli(tmp_path: Path, inp: Path, capsys, **clean) -> tuple[int, str]:
    params = _params(tmp_path / "params.yaml", min_chars=10, min_words=3, **BASIC, **clean)
    code = main(["--input", str(inp), "--output", str(tmp_path / "out"), "--params", str(params)])
    return code, capsys.readouterr().err


def _truncated(folder: Path) -> Path:
    folder.mkdir()
    docs = "".join(
        json.dumps({"id": f"t{i}", "text": f"record {i} has enough words"}) + "\n" for i in range(300)
    )
    full = gzip.compress(docs.encode())
    path = folder / "shard.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    return path


def test_truncated_gzip_exits_2_naming_file_and_line(tmp_path: Path, capsys) -> None:
    shard = _truncated(tmp_path / "in")
    code, err = _cli(tmp_path, tmp_path / "in", capsys)
    assert code == 2
    line = _error_line(err)
    assert line.startswith(f"error: clean: {shard}: corrupt or truncated at line ")
    assert "lines read, EOFError" in line
    assert not (tmp_path / "out").exists()


def test_truncated_gzip_under_quarantine_exits_0(tmp_path: Path, capsys) -> None:
    _truncated(tmp_path / "in")
    code, err = _cli(tmp_path, tmp_path / "in", capsys, on_bad_input="quarantine")
    assert code == 0 and "error:" not in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["rejected"] == {"unreadable": 1}
    assert report["input"] == report["kept"] + 1 == report["files"]["unreadable"][0]["line"]


def _in_folder(corpus: Path) -> Path:
    """The corpus moved into a folder of its own (the params file stays outside the input)."""
    (corpus.parent / "in").mkdir()
    return corpus.rename(corpus.parent / "in" / corpus.name)


def test_unsupported_files_in_a_folder_exit_2(corpus: Path, tmp_path: Path, capsys) -> None:
    corpus = _in_folder(corpus)
    (corpus.parent / "table.csv").write_text("id,text\na,b\n")
    (corpus.parent / "notes.txt").write_text("words\n")
    code, err = _cli(tmp_path, corpus.parent, capsys)
    assert code == 2
    line = _error_line(err)
    assert line.startswith(f"error: clean: cannot read {corpus.parent}/notes.txt: a plain text file")
    assert "(and 1 more: table.csv)" in line and "on_bad_input: quarantine" in line
    assert not (tmp_path / "out").exists()


def test_unsupported_files_listed_under_quarantine(corpus: Path, tmp_path: Path, capsys) -> None:
    corpus = _in_folder(corpus)
    (corpus.parent / "table.csv").write_text("id,text\na,b\n")
    code, err = _cli(tmp_path, corpus.parent, capsys, on_bad_input="quarantine")
    assert code == 0 and "error:" not in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["files"]["skipped"] == [{"file": "table.csv", "reason": "unsupported_format"}]
    assert report["input"] == 5  # the corpus only: a skipped file is not input
    assert "`table.csv`: skipped" in (tmp_path / "out" / "report.md").read_text()


def test_keeping_nothing_exits_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "textless.jsonl"
    path.write_text("".join(json.dumps({"id": f"x{i}", "title": "no text"}) + "\n" for i in range(3)))
    code, err = _cli(tmp_path, path, capsys)
    assert code == 2
    assert _error_line(err).startswith(f"error: clean: kept nothing from {path}: 3 input records")
    assert not (tmp_path / "out").exists()


def test_a_single_csv_exits_2_in_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "news.csv"
    path.write_text("id,text\na,a perfectly fine document\n")
    code, err = _cli(tmp_path, path, capsys)
    assert code == 2
    assert _error_line(err) == (
        f"error: clean: cannot read {path}: a CSV file; clean reads JSONL (.jsonl, .jsonl.gz) only: "
        "convert CSV, Parquet or TXT into JSONL with the ingest stage"
    )
    assert not (tmp_path / "out").exists()


def test_a_single_csv_from_the_shell_prints_one_error_line(tmp_path: Path) -> None:
    """The real process: its whole stderr is log lines and one error line, no traceback."""
    path = tmp_path / "news.csv"
    path.write_text("id,text\na,a perfectly fine document\n")
    params = _params(tmp_path / "params.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "components.clean", "--input", str(path), "--output", str(tmp_path / "out")]
        + ["--params", str(params)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2
    assert _error_line(proc.stderr).startswith(f"error: clean: cannot read {path}: a CSV file")
    assert [line for line in proc.stderr.splitlines() if " INFO " not in line] == [_error_line(proc.stderr)]
    assert not (tmp_path / "out").exists()
