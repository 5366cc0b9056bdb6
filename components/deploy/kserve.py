"""The release as a KServe InferenceService (serving.kserve.io/v1beta1), and applying it.

``inference_service`` is a pure function: params + the release's version, image and URIs -> the
InferenceService as a dict. It is a custom predictor: one container (``kserve-container``) on the
project image running the project's own server (``python -m serving``), the same command
``make serve`` runs. KServe's conventions, as its source states them (pkg/constants/constants.go,
pkg/apis/serving/v1beta1/predictor_custom.go, python/storage/kserve_storage/kserve_storage.py):

- a custom container's model location is its ``STORAGE_URI`` env var; KServe's storage
  initializer (an init container) downloads it into ``/mnt/models`` before the server starts. For
  an ``s3://bucket/prefix`` folder every object below the prefix lands at its path relative to the
  prefix, so the release bundle ``<release>/model/...`` becomes ``/mnt/models/model/...``;
- the container named ``kserve-container`` is the predictor; it listens on 8080 (KServe's default
  HTTP port; Knative sends requests to the containerPort and sets PORT to it);
- ``serving.kserve.io/enable-prometheus-scraping`` with ``prometheus.kserve.io/port|path`` tell
  KServe where the container's metrics are; ``prometheus.io/scrape|port|path`` are the plain
  annotations annotation-based Prometheus discovery reads.

``apply_inference_service`` creates the resource through the kubernetes client's
CustomObjectsApi, or replaces it when one of that name exists (a new release rolls out as a new
revision; with ``canaryTrafficPercent`` KServe splits traffic between the two).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from components.deploy.params import Params

log = logging.getLogger("deploy")

GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
CONTAINER = "kserve-container"  # KServe's name for the predictor container
MODEL_MOUNT = "/mnt/models"  # where KServe's storage initializer puts the storage URI's files
PORT = 8080  # KServe's default HTTP port for a predictor container
HEALTH_PATH, METRICS_PATH = "/healthz", "/metrics"
STORAGE_URI_ENV = "STORAGE_URI"  # a custom container's storage URI (KServe reads it from the env)
PREDICTION_LOG_ENV = "PREDICTION_LOG_URI"
# The data lake's credentials and endpoint, from the cluster's secret (optional keys).
DATA_LAKE_KEYS: tuple[str, ...] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
VERSION_ANNOTATION = "llm-production-line/model-version"
# The server's command: the project image's working folder (/app) holds the project and params.yaml,
# whose ``serving`` section the server validates and uses.
PARAMS_IN_IMAGE = "params.yaml"


def server_args(
    model_dir: str, log_uri: str, host: str = "0.0.0.0", port: int = PORT, generator_dir: str = ""
) -> list[str]:
    """``python -m serving``'s arguments for a model folder and a prediction-log URI (and a
    generator folder served on POST /generate; "" = none)."""
    return [
        "--model",
        model_dir,
        *(["--generator", generator_dir] if generator_dir else []),
        "--log",
        log_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--params",
        PARAMS_IN_IMAGE,
    ]


def inference_service(
    params: Params,
    *,
    version: str,
    image: str,
    storage_uri: str,
    prediction_log: str,
    data_lake_secret: str = "",
    model_dir: str = "model",
    generator_dir: str = "",
) -> dict[str, Any]:
    """The InferenceService serving the release at ``storage_uri`` (its folder: ``model/``,
    ``release.json``) with ``image``; predictions logged to ``prediction_log`` (a URI).

    ``data_lake_secret``: the Kubernetes secret whose AWS_* keys reach the server (the prediction
    log on S3); "" = none. ``version``: the model's content hash, recorded as an annotation.
    ``generator_dir``: the bundle's generator folder (``generator``: the server gets
    ``--generator /mnt/models/generator``); "" = the bundle has none (no /generate).
    """
    probe = {"httpGet": {"path": HEALTH_PATH, "port": PORT}}
    env: list[dict[str, Any]] = [
        {"name": STORAGE_URI_ENV, "value": storage_uri},
        {"name": PREDICTION_LOG_ENV, "value": prediction_log},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if data_lake_secret:
        env += [
            {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": data_lake_secret, "key": key, "optional": True}},
            }
            for key in DATA_LAKE_KEYS
        ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "command": ["python", "-m", "serving"],
        # $(VAR): expanded by Kubernetes from the container's env.
        "args": server_args(
            f"{MODEL_MOUNT}/{model_dir}",
            f"$({PREDICTION_LOG_ENV})",
            generator_dir=f"{MODEL_MOUNT}/{generator_dir}" if generator_dir else "",
        ),
        "env": env,
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {**probe, "initialDelaySeconds": 5, "periodSeconds": 10, "failureThreshold": 3},
        # Liveness waits longer: a pod still loading its model is not ready, but not dead.
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 20, "failureThreshold": 3},
        "resources": {
            "requests": {"cpu": params.cpu_request, "memory": params.memory_request},
            "limits": {"cpu": params.cpu_limit, "memory": params.memory_limit},
        },
    }
    predictor: dict[str, Any] = {"minReplicas": params.min_replicas, "maxReplicas": params.max_replicas}
    if params.canary_traffic_percent < 100:  # 100: the new release takes all traffic, KServe's default
        predictor["canaryTrafficPercent"] = params.canary_traffic_percent
    if params.service_account:
        predictor["serviceAccountName"] = params.service_account
    predictor["containers"] = [container]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": params.service_name,
            "labels": {"app.kubernetes.io/part-of": "llm-production-line"},
            "annotations": {
                "serving.kserve.io/enable-prometheus-scraping": "true",
                "prometheus.kserve.io/port": str(PORT),
                "prometheus.kserve.io/path": METRICS_PATH,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(PORT),
                "prometheus.io/path": METRICS_PATH,
                VERSION_ANNOTATION: version,
            },
        },
        "spec": {"predictor": predictor},
    }


def write_inference_service(path: str | Path, manifest: dict[str, Any]) -> None:
    """The manifest as YAML (key order kept: apiVersion, kind, metadata, spec, as kubectl shows it)."""
    Path(path).write_text(yaml.safe_dump(manifest, sort_keys=False, width=1000))


def read_inference_service(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


class KubernetesApi:
    """The three calls ``apply_inference_service`` needs, on the in-cluster (or kubeconfig) credentials."""

    def __init__(self) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self._api = client.CustomObjectsApi()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        try:
            return self._api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        return self._api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)

    def replace(self, namespace: str, name: str, manifest: dict[str, Any]) -> dict[str, Any]:
        return self._api.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, manifest)


def current_namespace(default: str = "default") -> str:
    """The pod's namespace (service-account mount), or ``default`` outside a cluster."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else default


def apply_inference_service(path: str | Path, namespace: str = "", api: Any = None) -> str:
    """Create the InferenceService in ``path`` in ``namespace`` ("" = the pod's own), or replace the
    one of that name (keeping its resourceVersion, as the API requires). Returns "created" or
    "replaced". ``api``: an object with get/create/replace (the kubernetes client by default)."""
    manifest = read_inference_service(path)
    api = api if api is not None else KubernetesApi()
    namespace = namespace or current_namespace()
    name = manifest["metadata"]["name"]
    manifest["metadata"]["namespace"] = namespace
    existing = api.get(namespace, name)
    if existing is None:
        api.create(namespace, manifest)
        action = "created"
    else:
        manifest["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        api.replace(namespace, name, manifest)
        action = "replaced"
    log.info(
        "deploy: %s InferenceService %s/%s (model %s)",
        action,
        namespace,
        name,
        manifest["metadata"]["annotations"].get(VERSION_ANNOTATION),
    )
    return action
