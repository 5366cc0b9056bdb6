"""Multi-node pretraining as a Kubeflow Training Operator PyTorchJob (kubeflow.org/v1).

``pytorchjob_manifest`` is a pure function: params + image + paths -> the PyTorchJob as a dict.
One Master and ``num_nodes - 1`` Worker pods, each running torchrun with ``tp*pp*dp / num_nodes``
processes (one per GPU: ``accelerator_count`` of ``accelerator_type`` per pod), all running the
same ``python -m components.pretrain`` command as ``dvc repro``. The operator injects
MASTER_ADDR / MASTER_PORT / RANK (the pod's node rank) into every pod; torchrun turns them into
the per-process ranks. Every pod mounts the same PersistentVolumeClaim (it must be
ReadWriteMany): input data, resumable checkpoints and the output live there, and a restarted job
resumes from the latest checkpoint.

``run_pytorchjob`` is what the ``pretrain_pytorchjob`` Kubeflow component calls: copy the
tokenized data and a params file onto the PVC, create the job, wait for it, copy the output into
the component's output artifact, return the metrics. It talks to the API server through the
``kubernetes`` client (installed with kfp), or through any object with the same two methods
(tests pass a fake).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from components.common.io import atomic_output_dir
from components.common.metrics import METRICS_FILE
from components.common.params import SECTIONS
from components.pretrain.params import SECTION, Params

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
# The operator reads the rendezvous port from the container named "pytorch", port "pytorchjob-port".
CONTAINER, PORT_NAME, PORT = "pytorch", "pytorchjob-port", 23456
VOLUME = "checkpoints"


def pytorchjob_manifest(
    params: Params,
    *,
    name: str,
    namespace: str,
    image: str,
    data: str,
    output: str,
    checkpoint_dir: str,
    params_file: str,
    pvc_name: str,
    pvc_mount: str,
    shm_size: str = "16Gi",
    backoff_limit: int = 3,
    service_account: str | None = None,
) -> dict[str, Any]:
    """The PyTorchJob that trains ``params`` on ``num_nodes`` pods.

    ``data`` / ``output`` / ``checkpoint_dir`` / ``params_file``: paths inside the pods, under
    ``pvc_mount`` (where the claim ``pvc_name`` is mounted on every pod).
    """
    command = [
        "python",
        "-m",
        "torch.distributed.run",
        f"--nnodes={params.num_nodes}",
        f"--nproc-per-node={params.procs_per_node}",
        # $(VAR): expanded by Kubernetes from the env the operator injects into each pod.
        "--node-rank=$(RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        "--max-restarts=0",
        "-m",
        "components.pretrain",
        "--tokenized",
        data,
        "--output",
        output,
        "--checkpoint-dir",
        checkpoint_dir,
        "--params",
        params_file,
    ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "command": command,
        "env": [
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "OMP_NUM_THREADS", "value": str(params.cpu_threads)},
            {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
        ],
        "ports": [{"name": PORT_NAME, "containerPort": PORT}],
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": VOLUME, "mountPath": pvc_mount},
        ],
    }
    if params.accelerator_count > 0:
        limits = {params.accelerator_type: str(params.accelerator_count)}
        container["resources"] = {"limits": limits, "requests": dict(limits)}
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            # NCCL and the data loaders use shared memory; the container default (64 MiB) is too small.
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}},
            {"name": VOLUME, "persistentVolumeClaim": {"claimName": pvc_name}},
        ],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account

    def replica(count: int) -> dict[str, Any]:
        # OnFailure: a failed pod restarts and the job resumes from the latest checkpoint.
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {
                "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": pod_spec,
            },
        }

    replicas = {"Master": replica(1)}
    if params.num_nodes > 1:
        replicas["Worker"] = replica(params.num_nodes - 1)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "llm-production-line"},
        },
        "spec": {
            "nprocPerNode": str(params.procs_per_node),
            "runPolicy": {"backoffLimit": backoff_limit, "cleanPodPolicy": "Running"},
            "pytorchReplicaSpecs": replicas,
        },
    }


def job_phase(job: dict[str, Any]) -> str:
    """ "Succeeded", "Failed" or "Running" (anything not finished yet) from the job's status."""
    conditions = (job.get("status") or {}).get("conditions") or []
    done = {c.get("type") for c in conditions if c.get("status") == "True"}
    if "Succeeded" in done:
        return "Succeeded"
    if "Failed" in done:
        return "Failed"
    return "Running"


def _failure_message(job: dict[str, Any]) -> str:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed":
            return f"{c.get('reason', '')}: {c.get('message', '')}"
    return "no failure condition"


class KubernetesApi:
    """The two calls the launcher needs, on the in-cluster (or kubeconfig) credentials."""

    def __init__(self) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self._api = client.CustomObjectsApi()

    def create(self, manifest: dict[str, Any]) -> None:
        meta = manifest["metadata"]
        self._api.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL, manifest)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self._api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def current_namespace(default: str = "kubeflow") -> str:
    """The pod's namespace (service-account mount), or ``default`` outside a cluster."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else default


def write_params_file(path: Path, params: Params) -> None:
    """A complete params file (every stage; the others at their defaults) for the CLI."""
    sections: dict[str, Any] = {stage: {} for stage in SECTIONS}
    sections[SECTION] = json.loads(json.dumps(dataclasses.asdict(params)))
    path.write_text(yaml.safe_dump(sections, sort_keys=True))


def run_pytorchjob(
    data: str,
    output: str,
    params: Params,
    *,
    image: str,
    pvc_name: str,
    pvc_mount: str,
    namespace: str = "",
    shm_size: str = "16Gi",
    timeout_s: float = 7 * 24 * 3600,
    poll_s: float = 30.0,
    name: str | None = None,
    api: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Train ``params`` as a PyTorchJob and write its output into ``output``; return the metrics.

    Files on the PVC (mounted at ``pvc_mount`` here and in the job's pods):
    ``pretrain-jobs/<name>/{data,params.yaml,output}`` and the resumable checkpoints in
    ``pretrain/`` (shared by jobs: a job with the same params and data resumes the last one).
    Raises RuntimeError when the job fails or does not finish within ``timeout_s``.
    """
    if not image:
        raise ValueError("pretrain_pytorchjob: image is required (the project image with CUDA)")
    api = api if api is not None else KubernetesApi()
    namespace = namespace or current_namespace()
    name = name or f"pretrain-{uuid.uuid4().hex[:10]}"
    mount = Path(pvc_mount)
    work = mount / "pretrain-jobs" / name
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(data, work / "data")
    write_params_file(work / "params.yaml", params)
    manifest = pytorchjob_manifest(
        params,
        name=name,
        namespace=namespace,
        image=image,
        data=str(work / "data"),
        output=str(work / "output"),
        checkpoint_dir=str(mount / "pretrain"),
        params_file=str(work / "params.yaml"),
        pvc_name=pvc_name,
        pvc_mount=pvc_mount,
        shm_size=shm_size,
    )
    api.create(manifest)
    log.info(
        "pretrain: created PyTorchJob %s/%s (%d nodes x %d)",
        namespace,
        name,
        params.num_nodes,
        params.procs_per_node,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        phase = job_phase(api.get(namespace, name))
        if phase == "Succeeded":
            break
        if phase == "Failed":
            raise RuntimeError(
                f"pretrain: PyTorchJob {namespace}/{name} failed ({_failure_message(api.get(namespace, name))})"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"pretrain: PyTorchJob {namespace}/{name} did not finish within {timeout_s:.0f} s"
            )
        sleep(poll_s)
    with atomic_output_dir(output) as out:
        shutil.copytree(work / "output", out, dirs_exist_ok=True)
    metrics = json.loads((work / "output" / METRICS_FILE).read_text())
    shutil.rmtree(work / "data", ignore_errors=True)  # the copy; the output stays for inspection
    log.info("pretrain: PyTorchJob %s/%s succeeded", namespace, name)
    return metrics
