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
    for name in ("components", "llm", "monitoring", "models", "serving"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, project / name)
    shutil.copy(TINY_PARAMS, project / "params.yaml")
    shutil.copytree(ROOT / "data" / "raw", project / "data" / "raw")
    shutil.copytree(ROOT / "data" / "feedback", project / "data" / "feedback")  # the flywheel's folder
    dvc(project, "init", "--no-scm", "-q")
    dvc(project, "config", "core.analytics", "false")
    result = dvc(project, "repro", check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> dict[str, str]:
    """A real S3 API on loopback (moto's server), with a bucket ``lake``; yields the AWS env vars.

    The variables are set in this process too, so fsspec/s3fs and DVC find the endpoint."""
    import socket
    import time

    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        boto3.client("s3").create_bucket(Bucket="lake")
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
