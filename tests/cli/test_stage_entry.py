"""The one stage entry: what both doors get (temporary files kept inside the project and removed)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from components.common.entry import RUN_RECORD
from components.common.io import write_jsonl
from components.common.params import SECTIONS
from components.tokenize.__main__ import main as tokenize_main


def _tokenize_inputs(tmp_path: Path) -> tuple[Path, Path]:
    docs = tmp_path / "documents"
    write_jsonl(
        docs / "part-0.jsonl",
        [{"id": f"d{i}", "text": f"the cat sat on mat {i % 7} " * 4} for i in range(200)],
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                **{s: {} for s in SECTIONS},
                "tokenize": {"vocab_size": 300, "valid_fraction": 0.2, "test_fraction": 0.2},
            }
        )
    )
    return docs, params


def test_only_rank_0_records_the_run(tmp_path: Path, monkeypatch):
    # Under torchrun every rank runs the entry and rank 0 writes the output; another rank's record
    # would race rank 0's rename of a shared output folder (a two-node job on one PVC).
    docs, params = _tokenize_inputs(tmp_path)
    for rank, recorded in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        out = tmp_path / f"rank{rank}" / "tokenize"
        assert tokenize_main(["--input", str(docs), "--output", str(out), "--params", str(params)]) == 0
        assert (out / "tokenizer.json").exists() and (out / RUN_RECORD).exists() == recorded


def test_a_stage_leaves_no_temporary_file_anywhere(tmp_path: Path, monkeypatch):
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    docs = tmp_path / "documents"
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "the",
        "mat",
        "while",
        "a",
        "dog",
        "ran",
        "in",
        "the",
        "park",
        "near",
        "the",
        "old",
        "house",
    ]
    write_jsonl(
        docs / "part-0.jsonl", [{"id": f"d{i}", "text": " ".join(words[i % 5 :] * 3)} for i in range(400)]
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                **{s: {} for s in SECTIONS},
                "tokenize": {"vocab_size": 300, "valid_fraction": 0.2, "test_fraction": 0.2},
            }
        )
    )
    out = tmp_path / "outputs" / "tokenize"
    seen = {}
    import components.tokenize.core as core

    original = core.run

    def spy(*args, **kwargs):
        seen["tmp"] = tempfile.gettempdir()
        Path(seen["tmp"], "scratch").write_text("x")  # what a helper library would leave
        return original(*args, **kwargs)

    monkeypatch.setattr(core, "run", spy)
    assert tokenize_main(["--input", str(docs), "--output", str(out), "--params", str(params)]) == 0
    assert (out / "tokenizer.json").exists()
    assert Path(seen["tmp"]).parent == out.parent  # beside the output, not the system temp folder
    assert list(system_tmp.iterdir()) == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["tokenize"]  # the stage's folder removed
    assert tempfile.tempdir == str(system_tmp)  # and the process's temp folder given back
