"""A throw-away DVC project (a copy of this repo's DAG with the tiny params profile), run once per
test session and shared by the pipeline tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY_PARAMS = Path(__file__).with_name("params_tiny.yaml")
BIN = Path(sys.executable).parent


def project_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env.update(DVC_NO_ANALYTICS="1", DO_NOT_TRACK="1", TOKENIZERS_PARALLELISM="false")
    return env


def dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dvc"), *args], cwd=project, env=project_env(), text=True, capture_output=True, check=check
    )


@pytest.fixture(scope="session")
def dvc_project(tmp_path_factory) -> Path:
    """dvc.yaml, the code and the raw samples copied into a temp folder; `dvc repro` run once."""
    project = tmp_path_factory.mktemp("dvc-project")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("components", "monitoring"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, project / name)
    shutil.copy(TINY_PARAMS, project / "params.yaml")
    shutil.copytree(ROOT / "data" / "raw", project / "data" / "raw")
    dvc(project, "init", "--no-scm", "-q")
    dvc(project, "config", "core.analytics", "false")
    result = dvc(project, "repro", check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project
