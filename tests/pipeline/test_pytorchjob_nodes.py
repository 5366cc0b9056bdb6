"""Two "nodes" from the PyTorchJob manifest itself: its Master and Worker pod specs, run here.

What a Kubernetes cluster with the Kubeflow Training Operator does, reproduced on this machine:

- the manifest is the one ``pretrain_pytorchjob`` sends (``pytorchjob.pytorchjob_manifest``, the
  Training Operator SDK's models, the cluster settings of pipelines/cluster.yaml);
- each pod becomes one process tree (its own session, killed as a whole like a pod), running the
  pod container's ``command`` + ``args`` after Kubernetes' ``$(VAR)`` expansion, with the
  container's ``env`` followed by the variables the operator injects. Those are reproduced from
  the operator's code, release 1.9 (pkg/controller.v1/pytorch/envvar.go ``setPodEnv``,
  master.go, elastic.go): PYTHONUNBUFFERED; MASTER_ADDR = PET_MASTER_ADDR = ``<job>-master-0``;
  MASTER_PORT = PET_MASTER_PORT = the master container's ``pytorchjob-port``; WORLD_SIZE =
  replicas x nprocPerNode; RANK = PET_NODE_RANK (Master 0, Worker i -> i + 1);
  PET_NPROC_PER_NODE = nprocPerNode; with an elasticPolicy PET_RDZV_ENDPOINT, PET_RDZV_BACKEND,
  PET_NNODES = ``min:max``, PET_MAX_RESTARTS, PET_RDZV_ID (without one PET_NNODES = replicas).

Replaced, because it cannot exist here, and nothing else: the PVC mount path (every path under
the container's mount of the claim) -> a temp dir shared by both "nodes"; the master pod's service
host name -> 127.0.0.1; the fixed port 23456 -> a free port per job start. The image is this
checkout and its venv (``python`` on PATH is the venv's, the project on PYTHONPATH, working dir
the repo root, as the image's WORKDIR holds the project). Not exercised: the operator's pod
creation, services and restarts themselves, NCCL and GPUs (gloo on CPU, one process per node).

Checked: the two nodes train; their per-step losses match the one-process run within the
data-parallel tests' tolerance; killing one node after a checkpoint was written, then starting
both again, resumes from that checkpoint and ends with the uninterrupted run's losses exactly.
An elastic job (job.min_nodes 1, max_nodes 2) that loses its Worker pod for good (preempted)
goes on by itself on the Master alone: torchrun restarts the worker group, the rendezvous drops
the dead node, and training resumes from the latest checkpoint at data-parallel size 1 with the
same global batch, ending at the one-process run's losses within the same tolerance.

On loopback both "pods" match the rendezvous endpoint's host, so the one started first would
host torchrun's store; every job start here starts the Worker once the Master's store listens,
as on a cluster, where only the master pod's host name matches. (Started together, one fresh
clone's make test in three saw the Master's torchrun still running 300 s after its training had
finished; a Worker that hosted the store and exited first is the likely cause, not proven.)
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from components.common.params import from_dict
from components.pretrain import checkpointing, pytorchjob
from components.pretrain.core import run
from components.pretrain.params import Params
from llm.gpt import free_port
from pipelines.cluster import load_cluster
from tests.gpt_fixtures import make_token_data
from tests.unit.test_pretrain_parallel import TINY, TOLERANCE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JOB = "pretrain-nodes"
STEPS = 24  # room for the kill to land between the first checkpoint and the end (steps)
TWO_NODES = {
    **TINY,
    "train_steps": STEPS,
    "eval_interval": 8,
    "checkpoint_interval": 4,
    "data_parallel_size": 2,
    "num_nodes": 2,  # one process per node
}
RUN_TIMEOUT_S = 300  # most time one job start may take, both nodes (s)
# The elastic job: 1 to 2 nodes; a short last call and heartbeat so the dead node is dropped (3
# missed heartbeats) and the survivor goes on within seconds (torchrun's defaults: 30 s and 5 s).
ELASTIC = {
    **TWO_NODES,
    "job": {"min_nodes": 1, "max_nodes": 2, "rendezvous_last_call_s": 5, "node_heartbeat_s": 1},
}


# ---------------------------------------------------------------- what Kubernetes and the operator do

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of command/args: ``$(VAR)`` -> its value when VAR is defined (else
    left as written), ``$$`` -> ``$``."""
    return _REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def _port(job: dict, replica: str) -> int:
    for container in job["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]["containers"]:
        if container["name"] == "pytorch":
            for port in container.get("ports", []):
                if port["name"] == "pytorchjob-port":
                    return port["containerPort"]
    raise AssertionError(f"no pytorchjob-port on {replica}")


def operator_env(job: dict, replica: str, index: int) -> list[tuple[str, str]]:
    """The variables the Training Operator (v1.9 ``setPodEnv``) appends to the pod's container env."""
    spec, name = job["spec"], job["metadata"]["name"]
    replicas = spec["pytorchReplicaSpecs"]
    total = sum(r["replicas"] for r in replicas.values())
    nproc = spec.get("nprocPerNode")
    env = [("PYTHONUNBUFFERED", "1")]
    if "Master" in replicas:
        port, addr = str(_port(job, "Master")), f"{name}-master-0"
        rank = str(index + 1 if replica == "Worker" else index)
        world = total * (int(nproc) if nproc and nproc.isdigit() else 1)
        env += [("MASTER_PORT", port), ("PET_MASTER_PORT", port), ("MASTER_ADDR", addr)]
        env += [
            ("PET_MASTER_ADDR", addr),
            ("WORLD_SIZE", str(world)),
            ("RANK", rank),
            ("PET_NODE_RANK", rank),
        ]
    if nproc is not None:
        env.append(("PET_NPROC_PER_NODE", nproc))
    elastic = spec.get("elasticPolicy")
    if elastic is None:
        env.append(("PET_NNODES", str(total)))
        return env
    host = elastic.get("rdzvHost", f"{name}-worker-0")
    env.append(("PET_RDZV_ENDPOINT", f"{host}:{elastic.get('rdzvPort') or _port(job, 'Worker')}"))
    env.append(("PET_RDZV_BACKEND", elastic.get("rdzvBackend", "c10d")))
    if "minReplicas" in elastic or "maxReplicas" in elastic:
        env.append(("PET_NNODES", f"{elastic['minReplicas']}:{elastic['maxReplicas']}"))
    else:
        env.append(("PET_NNODES", str(replicas["Worker"]["replicas"])))
    for key, var in (("maxRestarts", "PET_MAX_RESTARTS"), ("nProcPerNode", "PET_NPROC_PER_NODE")):
        if key in elastic:
            env.append((var, str(elastic[key])))
    if "rdzvId" in elastic:
        env.append(("PET_RDZV_ID", elastic["rdzvId"]))
    if elastic.get("rdzvConf"):
        env.append(("PET_RDZV_CONF", ",".join(f"{c['key']}={c['value']}" for c in elastic["rdzvConf"])))
    if elastic.get("standalone"):
        env.append(("PET_STANDALONE", ""))
    return env


class Node:
    """One pod of the job as a process tree on this machine."""

    def __init__(self, job: dict, replica: str, index: int, pvc: Path, port: int, log: Path) -> None:
        pod = job["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] == "pytorch"]
        (mount,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == pytorchjob.VOLUME]
        master_host, fixed_port = f"{job['metadata']['name']}-master-0", str(_port(job, "Master"))

        def here(value: str) -> str:  # the three substitutions, nothing else
            value = value.replace(master_host, "127.0.0.1").replace(fixed_port, str(port))
            return str(pvc) + value[len(mount) :] if value.startswith(mount) else value

        pod_env: dict[str, str] = {}
        for var in container.get("env", []):
            assert "valueFrom" not in var, var  # none in this manifest: nothing to resolve
            pod_env[var["name"]] = expand(var["value"], pod_env)
        for name, value in operator_env(job, replica, index):
            pod_env[name] = here(value)  # appended after the container's: the later one wins
        self.env = {
            **os.environ,  # the image's own environment ...
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # ... its python
            "PYTHONPATH": str(ROOT),  # the project installed in the image
            **pod_env,
        }
        self.command = [here(expand(a, pod_env)) for a in container["command"] + container.get("args", [])]
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the whole tree, as when the pod or its machine goes away. The tree, not only
        the session: torchrun starts its workers in sessions of their own."""
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.proc.wait(timeout=60)
        _gone, alive = psutil.wait_procs(tree, timeout=60)
        assert not alive, alive

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def nodes():
    """Starts the job's pods; every process tree it started is killed at teardown."""
    started: list[Node] = []

    def start(job: dict, pvc: Path, logs: Path, store_first: bool = False) -> list[Node]:
        """The Master and Worker pods; ``store_first``: the Worker once the Master's rendezvous
        store accepts connections."""
        port = free_port()  # one per job start, for the master's rendezvous
        logs.mkdir(parents=True, exist_ok=True)
        group = [Node(job, "Master", 0, pvc, port, logs / "master-0.log")]
        started.extend(group)
        if store_first:
            _wait_for_listener(port, group[0])
        group += [Node(job, "Worker", i, pvc, port, logs / f"worker-{i}.log") for i in range(1)]
        started.extend(group[1:])
        return group

    yield start
    for node in started:
        node.kill()


def _wait_for_listener(port: int, node: Node, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert node.proc.poll() is None, node.tail()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}\n{node.tail()}")


def wait(group: list[Node], timeout_s: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while any(n.proc.poll() is None for n in group) and time.monotonic() < deadline:
        time.sleep(0.2)
    for node in group:
        assert node.proc.poll() == 0, f"{node.command[:6]} -> {node.proc.returncode}\n{node.tail()}"


# ---------------------------------------------------------------- the job


def _job(tmp: Path, name: str, values: dict | None = None) -> tuple[dict, Path, dict[str, str]]:
    """The manifest as pretrain_pytorchjob builds it (params ``values``, default TWO_NODES), and
    its files on a temp "PVC"."""
    cluster = load_cluster()
    params = from_dict(Params, values or TWO_NODES, "pretrain")
    pvc = tmp / name / "pvc"
    paths = pytorchjob.job_paths(cluster.checkpoint_mount, JOB)
    job = pytorchjob.pytorchjob_manifest(
        params,
        name=JOB,
        namespace="team",
        image=cluster.image,
        **paths,
        pvc_name=cluster.checkpoint_pvc,
        pvc_mount=cluster.checkpoint_mount,
        shm_size=cluster.shm_size,
    )
    local = {k: str(pvc) + v[len(cluster.checkpoint_mount) :] for k, v in paths.items()}
    make_token_data(local["data"], docs=(120, 20, 20))  # as run_pytorchjob copies tokenize's output
    pytorchjob.write_params_file(Path(local["params_file"]), params)
    return job, pvc, local


def _step_losses(out: Path) -> list[float]:
    with open(out / "steps.csv", newline="") as f:
        return [float(row["train_loss"]) for row in csv.DictReader(f)]


def _latest_step(checkpoint_root: Path) -> int:
    pointers = list(checkpoint_root.glob(f"*/{checkpointing.LATEST}"))
    return int(pointers[0].read_text().strip().split("_")[1]) if pointers else 0


def test_kubernetes_expansion_of_command_arguments():
    env = {"RANK": "1", "MASTER_ADDR": "job-master-0"}
    assert expand("--node-rank=$(RANK)", env) == "--node-rank=1"
    assert expand("$(MASTER_ADDR):$(UNSET)", env) == "job-master-0:$(UNSET)"
    assert expand("$$(RANK) costs $$5", env) == "$(RANK) costs $5"


def test_the_operator_env_of_each_pod(tmp_path):
    job, _pvc, _paths = _job(tmp_path, "env")
    master, worker = dict(operator_env(job, "Master", 0)), dict(operator_env(job, "Worker", 0))
    assert master["MASTER_ADDR"] == master["PET_MASTER_ADDR"] == f"{JOB}-master-0"
    assert master["MASTER_PORT"] == master["PET_MASTER_PORT"] == "23456"
    assert (master["RANK"], worker["RANK"], worker["PET_NODE_RANK"]) == ("0", "1", "1")
    assert master["WORLD_SIZE"] == "2" and master["PET_NPROC_PER_NODE"] == "1"
    assert master["PET_NNODES"] == "2:2" and master["PET_RDZV_BACKEND"] == "c10d"
    assert master["PET_RDZV_ENDPOINT"] == f"{JOB}-master-0:23456"
    assert master["PET_MAX_RESTARTS"] == "3" and master["PET_RDZV_ID"] == JOB


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, dict]:
    """The uninterrupted one-process run of the same training (dp 1, 4 micro batches per step)."""
    tmp = tmp_path_factory.mktemp("single")
    out = tmp / "out"
    one = run(
        str(make_token_data(tmp / "data", docs=(120, 20, 20))),
        str(out),
        from_dict(Params, {**TWO_NODES, "data_parallel_size": 1, "num_nodes": 1}, "pretrain"),
    )
    return out, one


def test_two_nodes_from_the_manifest_match_one_process_and_resume_after_a_node_is_killed(
    tmp_path, nodes, single
):
    single_out, one = single

    # Uninterrupted: the Master and the Worker pod, started together.
    job, pvc, paths = _job(tmp_path, "full")
    wait(nodes(job, pvc, tmp_path / "full" / "logs", store_first=True))
    full_out = Path(paths["output"])
    full = json.loads((full_out / "metrics.json").read_text())
    assert full["steps"] == STEPS and full["accelerators"] == 2 and full["held_devices"] == 2
    expected, got = _step_losses(single_out), _step_losses(full_out)
    assert len(got) == len(expected) == STEPS
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= TOLERANCE
    assert full["valid_loss"] == pytest.approx(one["valid_loss"], abs=TOLERANCE)
    assert full["valid_loss"] < full["initial_valid_loss"]

    # Killed: the Worker pod goes away after a checkpoint; then both pods start again.
    job, pvc, paths = _job(tmp_path, "killed")
    ckpt, logs = Path(paths["checkpoint_dir"]), tmp_path / "killed" / "logs"
    master, worker = nodes(job, pvc, logs, store_first=True)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while _latest_step(ckpt) < 4 and master.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.kill()
    master.kill()  # restarting both, as the job's pods are
    killed_at = _latest_step(ckpt)
    assert 4 <= killed_at < STEPS, master.tail()
    assert not Path(paths["output"]).exists()
    wait(nodes(job, pvc, logs, store_first=True))
    resumed = json.loads((Path(paths["output"]) / "metrics.json").read_text())
    assert resumed["resumed_from_step"] == killed_at and resumed["runs"] == 2
    for name in ("steps.csv", "loss.csv"):
        assert (Path(paths["output"]) / name).read_bytes() == (full_out / name).read_bytes(), name
    assert resumed["valid_loss"] == full["valid_loss"]
    print(
        f"valid_loss: one process {one['valid_loss']:.6f}, two nodes {full['valid_loss']:.6f}, "
        f"killed after step {killed_at} and resumed {resumed['valid_loss']:.6f}"
    )


def _layout(checkpoint_root: Path) -> dict[str, int]:
    """tp/pp/dp of the run that wrote the latest checkpoint ({} before the first)."""
    pointers = list(checkpoint_root.glob(f"*/{checkpointing.LATEST}"))
    if not pointers:
        return {}
    step_dir = pointers[0].parent / pointers[0].read_text().strip()
    with contextlib.suppress(FileNotFoundError):  # superseded and deleted meanwhile
        return checkpointing.read_state(step_dir).layout
    return {}


def test_an_elastic_job_that_loses_a_node_for_good_resumes_on_the_node_left(tmp_path, nodes, single):
    single_out, one = single
    job, pvc, paths = _job(tmp_path, "elastic", ELASTIC)
    assert (
        job["spec"]["elasticPolicy"]["minReplicas"] == 1 and job["spec"]["elasticPolicy"]["maxReplicas"] == 2
    )
    ckpt, out = Path(paths["checkpoint_dir"]), Path(paths["output"])
    started = time.monotonic()
    master, worker = nodes(job, pvc, tmp_path / "elastic" / "logs", store_first=True)
    # Both nodes train (dp 2) until a checkpoint of theirs is committed; then the Worker pod is
    # preempted: killed, and never started again.
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline and master.proc.poll() is None:
        if _layout(ckpt).get("dp") == 2 and _latest_step(ckpt) >= 4:
            break
        time.sleep(0.02)
    worker.kill()
    killed_at = _latest_step(ckpt)
    assert 4 <= killed_at < STEPS, master.tail()
    assert not out.exists()
    wait([master])  # the Master's own torchrun goes on, alone, to the end
    wall = time.monotonic() - started
    log = master.log.read_text(errors="replace")
    metrics = json.loads((out / "metrics.json").read_text())
    # It resumed from a checkpoint the two nodes wrote, and ran at the smaller size.
    assert killed_at <= metrics["resumed_from_step"] < STEPS, log[-3000:]
    # 2 runs: the two nodes', then the Master's alone (3 if the Worker was slow enough to start
    # that the Master's first rendezvous closed without it, and it joined with a restart).
    assert metrics["runs"] >= 2 and metrics["steps"] == STEPS
    assert metrics["accelerators"] == 1 and metrics["held_devices"] == 1
    assert _layout(ckpt) == {"tp": 1, "pp": 1, "dp": 1}
    assert "elastic job on 1 node(s) of 1 to 2: data_parallel_size 1, 4 micro batches per step" in log
    # The loss is the same function of the step at either size: the one-process run's losses.
    expected, got = _step_losses(single_out), _step_losses(out)
    assert len(got) == len(expected) == STEPS
    worst = max(abs(a - b) for a, b in zip(got, expected, strict=True))
    assert worst <= TOLERANCE
    assert metrics["valid_loss"] == pytest.approx(one["valid_loss"], abs=TOLERANCE)
    assert metrics["valid_loss"] < metrics["initial_valid_loss"]
    print(
        f"elastic: worker killed after step {killed_at}, resumed from step {metrics['resumed_from_step']} "
        f"on 1 node; valid_loss {metrics['valid_loss']:.6f} vs one process {one['valid_loss']:.6f}, "
        f"worst step-loss difference {worst:.2e}; {wall:.1f} s from the start of the job"
    )
