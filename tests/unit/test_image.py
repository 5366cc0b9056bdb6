"""The images install through the scripts `make setup` runs (no Docker engine here to build them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPTS = ("scripts/setup.sh", "scripts/fetch_nltk_data.py")


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfile_installs_with_the_makefile_scripts(dockerfile: str):
    text = (ROOT / dockerfile).read_text()
    for src in re.findall(r"^COPY (\S+)", text, flags=re.M):
        for part in src.split():
            assert (ROOT / part).exists(), f"{dockerfile}: COPY {part} does not exist"
    run_lines = " ".join(re.findall(r"^RUN (.+)$", text, flags=re.M))
    for script in SETUP_SCRIPTS:
        assert script in run_lines, f"{dockerfile} does not run {script}"
    # Every package the pipeline components import is copied into the image.
    for package in ("components", "llm", "monitoring", "pipelines", "serving"):
        assert f"COPY {package}/ {package}/" in text


def test_makefile_setup_runs_the_same_scripts():
    makefile = (ROOT / "Makefile").read_text()
    for script in SETUP_SCRIPTS:
        assert script in makefile
