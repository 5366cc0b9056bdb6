"""The release's KServe InferenceService: valid for KServe's own models (kserve 0.21, in its own venv),
and the server starts from its container spec and serves the release as KServe would lay it out.

No Kubernetes here: what KServe and the kubelet do is reproduced from the spec (the storage
initializer's copy into /mnt/models, the container's command, args, env and port); autoscaling and
canary routing are not exercised.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.common.artifacts import INFERENCE_SERVICE, MODEL_DIR, RELEASE
from components.deploy.core import run as deploy
from components.deploy.kserve import CONTAINER, MODEL_MOUNT, PORT, read_inference_service
from components.deploy.params import Params
from llm.served import load_model
from tests.pipeline.conftest import ROOT
from tests.serving_fixtures import shared_model_dir

KSERVE_VENV = ROOT / ".cache" / "test-venvs" / "kserve"
ROUNDTRIP = Path(__file__).with_name("kserve_roundtrip.py")
LAKE = "llm-data-lake"
# The project image's ENV (Dockerfile), with its venv's place taken by this checkout's.
IMAGE_ENV = {
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
    "NLTK_DATA": str(ROOT / ".cache" / "nltk_data"),
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONDONTWRITEBYTECODE": "1",
}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """deploy's output for the tiny model, with dvc.yaml's kserve vars, a canary and a service account."""
    model = shared_model_dir(tmp_path_factory)
    out = tmp_path_factory.mktemp("kserve") / "deploy"
    deploy(
        str(model),
        str(out),
        Params(canary_traffic_percent=10, service_account="llm-serving"),
        image="llm-production-line:0.1.0",
        storage_uri=f"s3://{LAKE}/outputs/deploy",
        prediction_log=f"s3://{LAKE}/prediction_log",
        data_lake_secret="data-lake-credentials",
    )
    return out


def kserve_roundtrip(path: Path) -> dict[str, Any]:
    """``path`` deserialized into kserve's V1beta1InferenceService and serialized back (kserve venv)."""
    python = KSERVE_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(
            f"the KServe test venv is missing ({KSERVE_VENV}): create it with `make kserve-venv`"
            " (scripts/kserve_venv.sh; `make test` does it first)",
            pytrace=False,
        )
    proc = subprocess.run(
        [str(python), str(ROUNDTRIP), str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_inference_service_round_trips_through_kserves_own_models(release: Path):
    path = release / INFERENCE_SERVICE
    document = read_inference_service(path)
    assert kserve_roundtrip(path) == document
    predictor = document["spec"]["predictor"]
    assert (predictor["canaryTrafficPercent"], predictor["serviceAccountName"]) == (10, "llm-serving")


@pytest.mark.parametrize(
    ("where", "edit"),
    [
        ("a misspelt predictor field", lambda d: d["spec"]["predictor"].update(minReplica=2)),
        (
            "a container field in the predictor",
            lambda d: d["spec"]["predictor"].update(readinessProbe={"httpGet": {"path": "/healthz"}}),
        ),
        ("a misspelt probe field", lambda d: d["spec"]["predictor"]["containers"][0].update(livenesProbe={})),
    ],
)
def test_a_misspelt_or_misplaced_field_does_not_survive_the_round_trip(release, tmp_path, where, edit):
    document = read_inference_service(release / INFERENCE_SERVICE)
    edit(document)
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(document))
    assert kserve_roundtrip(path) != document, where


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args: a defined variable is replaced, $$ escapes."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]) if m[1] else "$", value
    )


def _container_env(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's env as the kubelet builds it: the image's ENV, then the spec's entries in
    order (values with $(VAR) expanded from earlier ones, secretKeyRef read from ``secrets``)."""
    env = dict(IMAGE_ENV)
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = _expand(entry["value"], env)
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        secret = secrets.get(ref["name"], {})
        if ref["key"] in secret:
            env[entry["name"]] = secret[ref["key"]]
        else:
            assert ref.get("optional"), f"secret {ref['name']} has no key {ref['key']}"
    return env


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_server_starts_as_the_inference_service_says_and_serves_the_release(release, tmp_path, s3_server):
    """Start ``python -m serving`` exactly as the InferenceService's predictor container says:
    its command and args, its env (the image's ENV, the spec's values, the data-lake secret's keys
    read from a stand-in secret: the local S3 server's), its containerPort, with $(VAR) expanded
    as Kubernetes expands it. What KServe would do first is done by hand: the release bundle is
    copied into a temp folder the way the storage initializer lays out an s3:// folder (every
    object at its path below the prefix), and that folder stands in for /mnt/models. That
    substitution, and 127.0.0.1 for 0.0.0.0, are the only changes to the spec; the process runs
    in the project root, which stands in for the image's working folder (/app: the project and
    its params.yaml). Then: readiness on the probe's path and port (bounded), predictions with
    the release's version from POST /predict, SIGTERM (bounded), and the logged rows in the lake.
    """
    import boto3

    document = read_inference_service(release / INFERENCE_SERVICE)
    (container,) = [c for c in document["spec"]["predictor"]["containers"] if c["name"] == CONTAINER]
    (port,) = [p["containerPort"] for p in container["ports"]]
    assert port == PORT
    assert _port_is_free(port), f"port {port} (KServe's predictor port) is taken on this machine"

    # The storage initializer: STORAGE_URI's folder -> /mnt/models (model/..., release.json, ...).
    env = _container_env(container, {"data-lake-credentials": dict(s3_server)})
    assert env["STORAGE_URI"] == f"s3://{LAKE}/outputs/deploy"
    mount = tmp_path / "mnt-models"
    shutil.copytree(release, mount)
    boto3.client("s3").create_bucket(Bucket=LAKE)

    def as_here(arg: str) -> str:
        arg = _expand(arg, env)
        if arg == "0.0.0.0":
            return "127.0.0.1"
        return str(mount) + arg.removeprefix(MODEL_MOUNT) if arg.startswith(MODEL_MOUNT + "/") else arg

    argv = [as_here(a) for a in container["command"] + container["args"]]
    assert argv[:3] == ["python", "-m", "serving"]
    assert f"s3://{LAKE}/prediction_log" in argv  # $(PREDICTION_LOG_URI), expanded
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    probe = container["readinessProbe"]["httpGet"]
    base = f"http://127.0.0.1:{probe['port']}"
    texts = ["a fine film", "dull and long", "the best acting of the year"]
    try:
        deadline = started + 90
        while True:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            try:
                if httpx.get(base + probe["path"], timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not ready within 90 s"
            time.sleep(0.3)
        assert httpx.get(base + container["livenessProbe"]["httpGet"]["path"]).json()["status"] == "ok"
        version = json.loads((release / RELEASE).read_text())["version"]
        response = httpx.post(base + "/predict", json={"texts": texts}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (
            body["model_version"]
            == version
            == document["metadata"]["annotations"]["llm-production-line/model-version"]
        )
        expected = load_model(release / MODEL_DIR).predict(texts).labels
        assert [p["label"] for p in body["predictions"]] == expected
        metrics_path = document["metadata"]["annotations"]["prometheus.io/path"]
        assert f'serving_model_info{{version="{version}"}} 1.0' in httpx.get(base + metrics_path).text
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    from monitoring.window import read_window

    now = datetime.now(UTC)  # a narrow window: the reader lists one partition per day
    frame = read_window(
        f"s3://{LAKE}/prediction_log", now - timedelta(hours=1), now + timedelta(hours=1)
    ).frame
    assert sorted(frame["text"]) == sorted(texts)


def test_a_missing_kserve_venv_fails_with_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "KSERVE_VENV", tmp_path / "absent")
    with pytest.raises(pytest.fail.Exception, match="make kserve-venv"):
        kserve_roundtrip(tmp_path / "any.yaml")


def test_dvc_yaml_gives_deploy_the_clusters_image_secret_and_the_monitored_log():
    import yaml

    from pipelines.cluster import load_cluster
    from pipelines.llm_pipeline import PREDICTION_LOG_URI
    from pipelines.monitoring_pipeline import DEFAULT_URIS

    kserve = yaml.safe_load((ROOT / "dvc.yaml").read_text())["vars"][0]["kserve"]
    cluster = load_cluster()
    assert (kserve["image"], kserve["data_lake_secret"]) == (cluster.image, cluster.data_lake_secret)
    assert kserve["prediction_log"] == PREDICTION_LOG_URI == DEFAULT_URIS["log_uri"]
