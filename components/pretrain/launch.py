"""Processes for a pretraining job: checks before launch, torchrun, and the body of each rank.

- ``check_machine``: what params.py cannot know (CUDA, Transformer Engine, GPUs per node) is
  refused here, before any process is started, with a message naming the key.
- ``launch_torchrun``: world size > 1 on this machine: ``python -m torch.distributed.run`` with
  one process per rank on an explicit free loopback port, each running
  ``components.pretrain.worker`` (gloo on CPU, NCCL on GPU, chosen by ``init_runtime``).
- ``run_ranks``: what every rank does (inside torchrun, ours or a PyTorchJob's): start megatron's
  parallel state for the layout, train, and let global rank 0 publish nothing but the staging
  folder (the caller moves it into the output).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from components.common.params import ParamsError
from components.pretrain.params import SECTION, Params

log = logging.getLogger(__name__)

WORKER_MODULE = "components.pretrain.worker"


@dataclasses.dataclass(frozen=True)
class Machine:
    """What the checks need to know about the machine (a value, so tests can pass any)."""

    cuda: bool
    gpus: int
    transformer_engine: bool

    @classmethod
    def detect(cls) -> Machine:
        import torch

        from llm.gpt.model import transformer_engine_available

        cuda = torch.cuda.is_available()
        return cls(
            cuda=cuda,
            gpus=torch.cuda.device_count() if cuda else 0,
            transformer_engine=transformer_engine_available(),
        )


def resolve_transformer_impl(params: Params, machine: Machine) -> str:
    """The layer spec to build: "auto" is Transformer Engine on a GPU that has it, else local."""
    if params.transformer_impl == "auto":
        return "transformer_engine" if machine.cuda and machine.transformer_engine else "local"
    return params.transformer_impl


def check_machine(params: Params, machine: Machine, launcher_world: int | None = None) -> None:
    """Refuse, before launch, what this machine cannot run. ``launcher_world``: WORLD_SIZE when
    an outside launcher (torchrun, a PyTorchJob) already started the processes.

    Raises ParamsError naming the key.
    """
    if not machine.cuda:
        if params.precision == "bf16":
            raise ParamsError(
                f"{SECTION}.precision: bf16 mixed precision needs CUDA GPUs (megatron's bf16 optimizer); "
                "this machine has none: use fp32"
            )
        if params.use_distributed_optimizer:
            raise ParamsError(
                f"{SECTION}.use_distributed_optimizer: megatron's distributed optimizer needs CUDA GPUs "
                "(its buffers are CUDA tensors); set it to false on CPU"
            )
    if params.transformer_impl == "transformer_engine" and not (machine.cuda and machine.transformer_engine):
        raise ParamsError(
            f"{SECTION}.transformer_impl: transformer_engine needs CUDA and the transformer_engine "
            "package; use auto or local"
        )
    if launcher_world is not None:
        _check_world(params, launcher_world)
    elif params.num_nodes > 1:
        raise ParamsError(
            f"{SECTION}.num_nodes: {params.num_nodes} nodes need a multi-node launcher (the "
            "pretrain_pytorchjob component, or torchrun on every node)"
        )
    if machine.cuda and params.procs_per_node > machine.gpus:
        raise ParamsError(
            f"{SECTION}.data_parallel_size: {params.procs_per_node} processes per node (tp*pp*dp / "
            f"num_nodes) but {machine.gpus} GPUs are visible"
        )


def _check_world(params: Params, world: int) -> None:
    """Refuse a launcher world that no node count of the (elastic) range gives."""
    if params.nodes_for_world(world) is not None:
        return
    low, high = params.node_range
    elastic = (
        f", or {params.procs_per_node} per node on {low} to {high} nodes (job.min_nodes, job.max_nodes)"
        if low < high
        else ""
    )
    raise ParamsError(
        f"{SECTION}.data_parallel_size: the launcher started {world} processes but "
        f"tensor x pipeline x data parallel = {params.world_size}{elastic}"
    )


def launcher_world_size() -> int | None:
    """WORLD_SIZE when this process was started by torchrun (or a PyTorchJob's torchrun)."""
    from llm.gpt import under_torchrun

    return int(os.environ["WORLD_SIZE"]) if under_torchrun() else None


def worker_args(
    data: str,
    stage: Path,
    run_dir: Path,
    params: Params,
    transformer_impl: str,
    started_at: float | None = None,
) -> list[str]:
    """The worker's arguments. ``started_at``: when the launching stage started (Unix seconds), so
    the run's wall time includes the launch (same machine: the clocks agree)."""
    started = [] if started_at is None else ["--started-at", repr(started_at)]
    return [
        "--data",
        str(data),
        "--stage-dir",
        str(stage),
        "--run-dir",
        str(run_dir),
        "--transformer-impl",
        transformer_impl,
        "--params-json",
        json.dumps(dataclasses.asdict(params), sort_keys=True),
        *started,
    ]


def torchrun_command(params: Params, port: int, args: list[str]) -> list[str]:
    """``python -m torch.distributed.run`` for all ranks on this machine, on ``port``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc-per-node={params.world_size}",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
        "--max-restarts=0",
        "-m",
        WORKER_MODULE,
        *args,
    ]


def _prctl():
    """libc's prctl, or None off Linux."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """A preexec_fn giving the child SIGTERM when this process dies, even by SIGKILL: torchrun
    then stops its workers instead of training on as orphans. libc is loaded here, in the
    parent: the child only makes the call (no imports between fork and exec)."""
    prctl = _prctl()
    return None if prctl is None else (lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM))


def forked_children_die_with_this_process() -> None:
    """Every process this one forks from now on gets SIGKILL when this one dies.

    dist_checkpointing forks writer processes during each save; if the trainer is killed in the
    middle, they would otherwise live on as orphans (holding files and pipes open). Their half-
    written folder is discarded anyway (see checkpointing.commit). For CLI entry points only:
    it changes the whole process.
    """
    prctl = _prctl()
    if prctl is not None:
        os.register_at_fork(after_in_child=lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGKILL))


def _ephemeral_low(default: int = 32768) -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def master_port(rng: random.Random | None = None) -> int:
    """A free TCP port for torchrun's rendezvous, chosen per run.

    Drawn at random below the kernel's ephemeral range: ports there are never handed out to
    outgoing connections (every gloo/NCCL job on the machine makes many), so between this check
    and torchrun binding it only another listener could take it. Falls back to any free port.
    """
    from llm.gpt import free_port

    rng = rng or random.SystemRandom()
    high = _ephemeral_low()
    for _ in range(64):
        port = rng.randrange(20000, max(high, 20001))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return free_port()


def launch_torchrun(params: Params, args: list[str]) -> None:
    """Run the job with torchrun on this machine; raise if any rank failed."""
    command = torchrun_command(params, master_port(), args)
    env = dict(os.environ)
    # torchrun otherwise forces OMP_NUM_THREADS=1 (with a warning); each rank sets its own threads.
    env.setdefault("OMP_NUM_THREADS", str(params.cpu_threads))
    log.info("pretrain: launching %d processes: %s", params.world_size, " ".join(command[:9]))
    result = subprocess.run(command, env=env, preexec_fn=_die_with_parent(), check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"pretrain: torchrun exited with status {result.returncode} (see the rank logs above)"
        )


def at_launcher_world(params: Params, world: int | None) -> Params:
    """``params`` as they run in a world of ``world`` processes (None: no outside launcher, the
    world params ask for). In an elastic job the world is the nodes that joined the rendezvous x
    processes per node, and data_parallel_size follows it (``Params.at_nodes``)."""
    if world is None or world == params.world_size:
        return params
    _check_world(params, world)
    return params.at_nodes(params.nodes_for_world(world))


def run_ranks(
    data: str | Path, stage: Path, run_dir: Path, params: Params, transformer_impl: str, started: float
) -> dict[str, Any]:
    """Body of every rank: megatron runtime for the layout, then ``train_job``.

    Under an elastic launcher the layout is the one of the nodes that joined: data_parallel_size
    scaled to the world torchrun gives (``at_launcher_world``); the global batch stays."""
    import shutil

    import torch

    from components.pretrain.shape import gpt_shape, tokenizer_info
    from components.pretrain.training import cpu_threads, train_job
    from llm.gpt import megatron_runtime

    params = at_launcher_world(params, launcher_world_size())
    if params.node_range[0] < params.node_range[1]:
        log.info(
            "pretrain: elastic job on %d node(s) of %d to %d: data_parallel_size %d, %d micro batches per step",
            params.num_nodes,
            *params.node_range,
            params.data_parallel_size,
            params.grad_accumulation,
        )
    vocab_size, eod = tokenizer_info(data)
    shape = gpt_shape(params, vocab_size)
    with (
        cpu_threads(params.cpu_threads),
        megatron_runtime(tp=params.tensor_parallel_size, pp=params.pipeline_parallel_size, seed=params.seed),
    ):
        if torch.distributed.get_rank() == 0:
            shutil.rmtree(stage, ignore_errors=True)
            stage.mkdir(parents=True)
        torch.distributed.barrier()
        return train_job(data, stage, run_dir, params, shape, vocab_size, eod, transformer_impl, started)
