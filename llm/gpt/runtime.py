"""Start and stop the torch.distributed + megatron parallel state that megatron-core needs.

Under torchrun (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT / LOCAL_RANK set) the process joins
that world; otherwise it forms a world of one on an in-memory store (no TCP port, so nothing to
collide with other jobs on the machine), so a single CPU process, a test, or a notebook can build
and run megatron models. gloo on CPU, nccl on GPU.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import torch

from llm.gpt.cpu_compat import apply_cpu_compat, install_cpu_rng_tracker

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Whether init_runtime created the process group (and so shutdown_runtime should destroy it).
_OWNS_PROCESS_GROUP = False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a single-process rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def under_torchrun() -> bool:
    """True when the process was started by torchrun (or another launcher setting its env vars)."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


def init_runtime(tp: int = 1, pp: int = 1, seed: int = 0) -> None:
    """Initialise torch.distributed, megatron's model-parallel groups and its RNG streams.

    Args:
        tp: tensor-parallel size. pp: pipeline-parallel size. The world size must be a multiple
            of tp * pp (the rest is data parallel).
        seed: base seed; megatron derives the tensor-parallel and expert streams from it.

    Safe to call again after ``shutdown_runtime()``. On CPU it first applies ``apply_cpu_compat``.
    """
    global _OWNS_PROCESS_GROUP
    from megatron.core import parallel_state, tensor_parallel

    cuda = torch.cuda.is_available()
    if not cuda:
        apply_cpu_compat()
    if not torch.distributed.is_initialized():
        backend = "nccl" if cuda else "gloo"
        if under_torchrun():
            if cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            torch.distributed.init_process_group(backend=backend)
        else:
            # A world of one needs no rendezvous: an in-memory store, no port to race for.
            torch.distributed.init_process_group(
                backend=backend, store=torch.distributed.HashStore(), world_size=1, rank=0
            )
        _OWNS_PROCESS_GROUP = True
    world = torch.distributed.get_world_size()
    if world % (tp * pp) != 0:
        raise ValueError(f"world size {world} is not a multiple of tp*pp = {tp}*{pp}")
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    if not cuda:
        # A fresh CPU tracker each time, so a second init (tests, notebooks) reseeds cleanly.
        install_cpu_rng_tracker()
    tensor_parallel.model_parallel_cuda_manual_seed(seed)
    torch.manual_seed(seed)


def shutdown_runtime() -> None:
    """Destroy megatron's parallel state and the process group that ``init_runtime`` created."""
    global _OWNS_PROCESS_GROUP
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if _OWNS_PROCESS_GROUP and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _OWNS_PROCESS_GROUP = False


@contextlib.contextmanager
def megatron_runtime(tp: int = 1, pp: int = 1, seed: int = 0) -> Iterator[None]:
    """``with megatron_runtime(): ...`` = ``init_runtime(...)`` then ``shutdown_runtime()``."""
    init_runtime(tp=tp, pp=pp, seed=seed)
    try:
        yield
    finally:
        shutdown_runtime()
