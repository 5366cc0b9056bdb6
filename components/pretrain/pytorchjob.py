"""Multi-node pretraining as a Kubeflow Training Operator PyTorchJob (kubeflow.org/v1).

``pytorchjob`` is a pure function: params + image + paths -> the job as the Training Operator's
own SDK models (``kubeflow.training.models``, package kubeflow-training, with the kubernetes
client's pod models); ``pytorchjob_manifest`` is the dict the API server receives (the kubernetes
ApiClient's ``sanitize_for_serialization`` of it) and ``validate_manifest`` reads a dict back
into the models and refuses any field they do not know (a misspelt key would otherwise be
dropped by the API server without a word).

One Master and ``num_nodes - 1`` Worker pods, each running torchrun with ``tp*pp*dp / num_nodes``
processes (one per GPU: ``accelerator_count`` of ``accelerator_type`` per pod), all running the
same ``python -m components.pretrain`` command as ``dvc repro``. The command carries no
rendezvous flags: torchrun reads them from the environment the operator injects into every pod
(release 1.9, pkg/controller.v1/pytorch/envvar.go, master.go, elastic.go):

- always: ``MASTER_ADDR`` = ``PET_MASTER_ADDR`` = ``<job>-master-0`` (the master pod's service),
  ``MASTER_PORT`` = ``PET_MASTER_PORT`` = the master container's port named ``pytorchjob-port``,
  ``RANK`` = ``PET_NODE_RANK`` = the pod's node rank (Master 0, Worker i -> i + 1),
  ``WORLD_SIZE`` = replicas x nprocPerNode, ``PET_NPROC_PER_NODE`` = ``spec.nprocPerNode``,
  ``PYTHONUNBUFFERED=1``;
- with an elasticPolicy (``job.rendezvous: c10d``): ``PET_RDZV_ENDPOINT`` = rdzvHost:rdzvPort,
  ``PET_RDZV_BACKEND``, ``PET_NNODES`` = ``min:max``, ``PET_MAX_RESTARTS``, ``PET_RDZV_ID``;
- without (``job.rendezvous: static``): ``PET_NNODES`` = the number of pods.

Every pod mounts the same PersistentVolumeClaim (it must be ReadWriteMany): input data,
resumable checkpoints and the output live there, and a restarted job resumes from the latest
checkpoint.

Elastic range (``job.min_nodes`` < ``job.max_nodes``, c10d only): the elasticPolicy's
minReplicas/maxReplicas are the range, the pods created are still ``num_nodes`` (the desired
size), and torchrun trains on whichever node count in the range joined its rendezvous. When a
node is preempted, the collectives of the others fail, their torchrun restarts the worker group
(``max_restarts``), the rendezvous drops the silent node (3 missed ``node_heartbeat_s``), waits
``rendezvous_last_call_s`` for more, and training resumes from the latest checkpoint on the nodes
left, ``data_parallel_size`` scaled to them and the same global batch (``Params.at_nodes``). When
the Worker replicas are raised again, the waiting nodes make the running ones restart the same
way and join (up to ``max_nodes``). Every node count in the range is checked by the params
before anything is created.

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
from components.common.params import SECTIONS, ParamsError
from components.pretrain.params import SECTION, Params

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
MODEL = "KubeflowOrgV1PyTorchJob"  # the SDK model of the whole job (kubeflow.training.models)
# The operator reads the rendezvous port from the container named "pytorch", port "pytorchjob-port".
CONTAINER, PORT_NAME, PORT = "pytorch", "pytorchjob-port", 23456
VOLUME = "checkpoints"


def pod_command(data: str, output: str, checkpoint_dir: str, params_file: str) -> list[str]:
    """What every pod runs: torchrun, configured by the operator's PET_* environment (nodes,
    processes per node, rendezvous, node rank, restarts), around the stage's own CLI."""
    return [
        "python",
        "-m",
        "torch.distributed.run",
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


def _resources(params: Params):
    from kubernetes.client import V1ResourceRequirements

    job = params.job
    requests = {"cpu": job.cpu_request, "memory": job.memory_request}
    limits = {k: v for k, v in (("cpu", job.cpu_limit), ("memory", job.memory_limit)) if v}
    if params.accelerator_count > 0:
        # Extended resources (GPUs) are requested by their limit; request = limit, as Kubernetes requires.
        limits[params.accelerator_type] = requests[params.accelerator_type] = str(params.accelerator_count)
    return V1ResourceRequirements(requests=requests, limits=limits or None)


def _rendezvous_conf(params: Params):
    """torchrun's rendezvous settings (PET_RDZV_CONF) that decide how an elastic job changes size:
    how long a rendezvous that has min_nodes waits for more, and how soon a silent node is
    dropped (after 3 missed keep-alives). A fixed-size job waits for all its nodes anyway."""
    from kubeflow.training import models as m

    job = params.job
    return [
        m.KubeflowOrgV1RDZVConf(key="last_call_timeout", value=str(job.rendezvous_last_call_s)),
        m.KubeflowOrgV1RDZVConf(key="keep_alive_interval", value=str(job.node_heartbeat_s)),
    ]


def pytorchjob(
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
    service_account: str | None = None,
):
    """The PyTorchJob (a ``KubeflowOrgV1PyTorchJob``) that trains ``params`` on ``num_nodes`` pods.

    ``data`` / ``output`` / ``checkpoint_dir`` / ``params_file``: paths inside the pods, under
    ``pvc_mount`` (where the claim ``pvc_name`` is mounted on every pod). ``shm_size``: the
    in-memory /dev/shm of every pod (Kubernetes quantity). Resources, rendezvous, restart and
    clean-up policies come from ``params.job`` and the accelerator keys.
    """
    from kubeflow.training import models as m
    from kubernetes import client as k

    low, high = params.node_range
    if params.num_nodes == 1 and high > 1:
        raise ParamsError(
            f"{SECTION}.job.max_nodes: a job that starts on one pod has no Worker pods to grow into "
            f"(the operator's elasticPolicy needs them): start it on num_nodes >= 2, got max_nodes={high}"
        )
    container = k.V1Container(
        name=CONTAINER,
        image=image,
        command=pod_command(data, output, checkpoint_dir, params_file),
        env=[
            k.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
            # torchrun would otherwise force 1 thread per process (with a warning).
            k.V1EnvVar(name="OMP_NUM_THREADS", value=str(params.cpu_threads)),
            k.V1EnvVar(name="TOKENIZERS_PARALLELISM", value="false"),
        ],
        ports=[k.V1ContainerPort(name=PORT_NAME, container_port=PORT)],
        resources=_resources(params),
        volume_mounts=[
            k.V1VolumeMount(name="dshm", mount_path="/dev/shm"),
            k.V1VolumeMount(name=VOLUME, mount_path=pvc_mount),
        ],
    )
    pod = k.V1PodSpec(
        containers=[container],
        volumes=[
            # NCCL and the data loaders use shared memory; the container default (64 MiB) is too small.
            k.V1Volume(name="dshm", empty_dir=k.V1EmptyDirVolumeSource(medium="Memory", size_limit=shm_size)),
            k.V1Volume(
                name=VOLUME,
                persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(claim_name=pvc_name),
            ),
        ],
        service_account_name=service_account or None,
    )
    template = k.V1PodTemplateSpec(
        metadata=k.V1ObjectMeta(annotations={"sidecar.istio.io/inject": "false"}), spec=pod
    )

    def replica(count: int):
        # The restarted pod's torchrun rejoins the rendezvous and the job resumes from the latest checkpoint.
        return m.KubeflowOrgV1ReplicaSpec(
            replicas=count, restart_policy=params.job.restart_policy, template=template
        )

    replicas = {"Master": replica(1)}
    if params.num_nodes > 1:
        replicas["Worker"] = replica(params.num_nodes - 1)
    elastic = None
    if params.job.rendezvous == "c10d" and params.num_nodes > 1:  # the operator wants Workers for it
        elastic = m.KubeflowOrgV1ElasticPolicy(
            # The range torchrun trains on (PET_NNODES = min:max); the pods started are num_nodes.
            # Each rank scales data_parallel_size to the nodes that joined (Params.at_nodes).
            min_replicas=low,
            max_replicas=high,
            rdzv_backend="c10d",
            # The operator's default host is <job>-worker-0; the master pod (always present) hosts it here.
            rdzv_host=f"{name}-master-0",
            rdzv_port=PORT,
            rdzv_id=name,
            max_restarts=params.job.max_restarts,
            rdzv_conf=_rendezvous_conf(params) if low < high else None,
        )
    return m.KubeflowOrgV1PyTorchJob(
        api_version=f"{GROUP}/{VERSION}",
        kind=KIND,
        metadata=k.V1ObjectMeta(
            name=name, namespace=namespace, labels={"app.kubernetes.io/part-of": "llm-production-line"}
        ),
        spec=m.KubeflowOrgV1PyTorchJobSpec(
            nproc_per_node=str(params.procs_per_node),
            elastic_policy=elastic,
            run_policy=m.KubeflowOrgV1RunPolicy(
                backoff_limit=params.job.backoff_limit, clean_pod_policy=params.job.clean_pod_policy
            ),
            pytorch_replica_specs=replicas,
        ),
    )


def to_manifest(job: Any) -> dict[str, Any]:
    """The dict the API server receives for an SDK model (camelCase keys, no None fields)."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(job)


def pytorchjob_manifest(params: Params, **kwargs: Any) -> dict[str, Any]:
    """``pytorchjob(params, **kwargs)`` as the dict the API receives, checked by ``validate_manifest``."""
    manifest = to_manifest(pytorchjob(params, **kwargs))
    validate_manifest(manifest)
    return manifest


class _Response:
    """What the SDK's ``ApiClient.deserialize`` reads: a response with a JSON body."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body)


def _first_difference(sent: Any, kept: Any, path: str) -> str | None:
    if isinstance(sent, dict):
        kept = kept if isinstance(kept, dict) else {}
        for key in sent:
            if key not in kept:
                return f"{path}.{key}"
            found = _first_difference(sent[key], kept[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(sent, list):
        if not isinstance(kept, list) or len(kept) != len(sent):
            return path
        for i, (a, b) in enumerate(zip(sent, kept, strict=True)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if sent == kept else path


def validate_manifest(manifest: dict[str, Any]):
    """Read ``manifest`` into the SDK's ``KubeflowOrgV1PyTorchJob``; return it.

    The models drop fields they do not know and refuse missing required ones (a container
    without a name ...); a manifest that does not come back unchanged from a round trip through
    them is refused, naming the first field that was lost. Raises ValueError.
    """
    from kubeflow.training import ApiClient

    try:
        job = ApiClient().deserialize(_Response(manifest), MODEL)
    except ValueError as exc:
        raise ValueError(f"PyTorchJob manifest: {exc}") from None
    lost = _first_difference(manifest, to_manifest(job), "")
    if lost:
        raise ValueError(
            f"PyTorchJob manifest: {lost.lstrip('.')} is not a field of {MODEL} (or has the wrong type); "
            "the API server would drop it"
        )
    return job


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


def job_paths(pvc_mount: str, name: str) -> dict[str, str]:
    """The job's files on the PVC (mounted at ``pvc_mount``), as ``pytorchjob``'s keyword arguments:
    ``pretrain-jobs/<name>/{data,params.yaml,output}``, and the checkpoints in ``pretrain/``
    (shared by jobs: a job with the same params and data resumes the last one)."""
    mount = Path(pvc_mount)
    work = mount / "pretrain-jobs" / name
    return {
        "data": str(work / "data"),
        "output": str(work / "output"),
        "checkpoint_dir": str(mount / "pretrain"),
        "params_file": str(work / "params.yaml"),
    }


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
    paths = job_paths(pvc_mount, name)
    work = Path(paths["params_file"]).parent
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(data, paths["data"])
    write_params_file(Path(paths["params_file"]), params)
    manifest = pytorchjob_manifest(
        params,
        name=name,
        namespace=namespace,
        image=image,
        **paths,
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
        shutil.copytree(paths["output"], out, dirs_exist_ok=True)
    metrics = json.loads((Path(paths["output"]) / METRICS_FILE).read_text())
    shutil.rmtree(paths["data"], ignore_errors=True)  # the copy; the output stays for inspection
    log.info("pretrain: PyTorchJob %s/%s succeeded", namespace, name)
    return metrics
