"""A broken params file is refused in one line: the file named once, YAML errors with line and column."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "components.common.check_params", str(path)],
        cwd=ROOT,
        text=True,
        capture_output=True,
    )


def test_a_yaml_syntax_error_names_the_file_once_with_line_and_column(tmp_path: Path):
    bad = tmp_path / "params.yaml"
    bad.write_text("ingest:\n  seed: 1\nclean:\n  min_words: [30\n")
    result = _check(bad)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {bad}: not valid YAML: line 5, column 1: ")
    assert line.count(str(bad)) == 1


def test_a_missing_file_is_named_once(tmp_path: Path):
    result = _check(tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: params file not found"
