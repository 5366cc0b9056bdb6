"""Let megatron-core 0.16 run on a CPU-only torch (gloo), for the laptop / CI path.

megatron-core is written for CUDA: it asks for ``torch.cuda.current_device()``, keeps its RNG
streams in CUDA generators, and creates a few tensors with a literal ``device="cuda"``.
``apply_cpu_compat()`` installs the smallest set of CPU stand-ins that the calls we use need
(model build/forward/backward, the pipeline schedules, megatron's DistributedDataParallel and
optimizer with gradient clipping, dist_checkpointing save/load).

Contract: idempotent; does nothing at all when CUDA is available, so GPU runs use megatron
exactly as shipped. Every measure names the megatron-core call that needs it.
"""

from __future__ import annotations

import contextlib
import importlib
import types
from typing import Any

import torch

_APPLIED = False

# Modules that create tensors with a literal device="cuda" (or "cuda:N") in the code paths we use:
# - transformer.utils.get_default_causal_mask (attention without an explicit mask),
# - pipeline_parallel.schedules (loss/num-token accumulators in forward_backward_*),
# - optimizer.clip_grads / optimizer.optimizer (grad-norm and found-inf buffers; without apex or
#   TE, clip_grads falls back to megatron.core.utils.local_multi_tensor_l2_norm, also listed),
# - megatron.core.utils (grad-norm all-reduce buffer, parameter hashes),
# - tensor_parallel.data (broadcast_data, size exchange),
# - dist_checkpointing.strategies.state_dict_saver (metadata-reuse vote during save),
# - dist_checkpointing.exchange_utils (shard exchange during load/resharding).
_CUDA_LITERAL_MODULES = (
    "megatron.core.transformer.utils",
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.optimizer",
    "megatron.core.utils",
    "megatron.core.tensor_parallel.data",
    "megatron.core.dist_checkpointing.strategies.state_dict_saver",
    "megatron.core.dist_checkpointing.exchange_utils",
)

# Tensor factories whose ``device=`` keyword is rewritten from CUDA to CPU.
_FACTORIES = (
    "tensor",
    "zeros",
    "ones",
    "empty",
    "full",
    "arange",
    "zeros_like",
    "ones_like",
    "empty_like",
    "full_like",
    "randn",
    "rand",
)


def _cpu_device(device: Any) -> Any:
    """Map a CUDA device spec ("cuda", "cuda:0", torch.device("cuda"), an int index) to CPU."""
    if device is None:
        return None
    if isinstance(device, int) and not isinstance(device, bool):
        return torch.device("cpu")
    if isinstance(device, str | torch.device) and str(device).startswith("cuda"):
        return torch.device("cpu")
    return device


class _CpuTorch(types.ModuleType):
    """A stand-in for the ``torch`` module inside one megatron module: identical except that
    tensor factories called with a CUDA device create CPU tensors (and drop ``pin_memory``)."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        value = getattr(torch, name)
        if name in _FACTORIES:

            def factory(*args: Any, __f=value, **kwargs: Any) -> Any:
                if "device" in kwargs:
                    kwargs["device"] = _cpu_device(kwargs["device"])
                kwargs.pop("pin_memory", None)
                return __f(*args, **kwargs)

            return factory
        return value


class CpuRNGStatesTracker:
    """The CPU counterpart of megatron's ``CudaRNGStatesTracker``.

    megatron forks named RNG streams (``tensor_parallel.get_cuda_rng_tracker().fork()``) around
    dropout in tensor-parallel regions so that TP ranks draw different masks while DP replicas
    draw the same ones. On CPU the streams are ``torch.Generator`` states swapped into the
    default CPU generator, which keeps those streams distinct and seeded.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.reset()

    def is_initialized(self) -> bool:
        return self._is_initialized

    def reset(self) -> None:
        self._is_initialized = False
        self.states_: dict[str, torch.Tensor] = {}
        self.seeds_: set[int] = set()

    def get_states(self) -> dict[str, torch.Tensor]:
        return dict(self.states_)

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self._is_initialized = True
        self.states_ = states

    def add(self, name: str, seed: int) -> None:
        self._is_initialized = True
        if seed in self.seeds_:
            raise RuntimeError(f"seed {seed} already exists")
        if name in self.states_:
            raise RuntimeError(f"rng state {name} already exists")
        self.seeds_.add(seed)
        self.states_[name] = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def fork(self, name: str = "model-parallel-rng"):
        if name not in self.states_:
            raise RuntimeError(f"rng state {name} is not added")
        orig = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(orig)


def clip_grad_by_total_norm_fp32(
    parameters: Any, max_norm: float, total_norm: float, use_decoupled_grad: bool = False
) -> None:
    """CPU stand-in for ``megatron.core.optimizer.clip_grads.clip_grad_by_total_norm_fp32``.

    The original asserts ``grad.type() == 'torch.cuda.FloatTensor'`` and allocates its overflow
    buffer on "cuda"; the arithmetic is the same: grads scaled in place by
    ``max_norm / (total_norm + 1e-6)`` when that is below 1.
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    attr = "decoupled_grad" if use_decoupled_grad else "grad"
    grads = [getattr(p, attr).detach() for p in parameters if getattr(p, attr, None) is not None]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0:
        for grad in grads:
            grad.mul_(clip_coeff)


def install_cpu_rng_tracker() -> None:
    """Make ``tensor_parallel.get_cuda_rng_tracker()`` return a fresh CPU tracker.

    Needed by ``model_parallel_cuda_manual_seed`` (it calls ``torch.cuda.get_rng_state``, which
    fails without CUDA) and by every ``get_cuda_rng_tracker().fork()`` in attention/dropout.
    """
    from megatron.core.tensor_parallel import random as mrandom

    mrandom._CUDA_RNG_STATE_TRACKER = CpuRNGStatesTracker()
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True


def apply_cpu_compat() -> None:
    """Install the CPU stand-ins (once per process). A no-op when CUDA is available."""
    global _APPLIED
    if _APPLIED or torch.cuda.is_available():
        return

    # torch.cuda.current_device(): ~100 megatron call sites use it as the device of new tensors
    # (GlobalMemoryBuffer.get_tensor for attention scratch, VocabParallelEmbedding, the DDP
    # buffers, dist_checkpointing). On CPU the "current device" is the CPU.
    torch.cuda.current_device = lambda: torch.device("cpu")
    # torch.cuda.synchronize(): called by get_forward_backward_func's schedules, timers and
    # dist_checkpointing save/load; nothing to wait for on CPU.
    torch.cuda.synchronize = lambda *args, **kwargs: None
    # Tensor.cuda(): dist_checkpointing.exchange_utils, tensor_parallel.data.broadcast_data and
    # LanguageModule.setup_embeddings_and_output_layer (tied embeddings, PP > 1) move tensors
    # "to the GPU"; on CPU they stay where they are.
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    from megatron.core.tensor_parallel import random as mrandom

    # Activation recompute (tensor_parallel.random.CheckpointFunction, via _get_all_rng_states /
    # _set_all_rng_states) saves and restores the CUDA RNG state around the recomputed forward.
    # There is no CUDA generator here; the CPU state and the tracker's streams (our CPU tracker)
    # are saved and restored by the same functions.
    mrandom._get_cuda_rng_state = lambda *args, **kwargs: torch.empty(0, dtype=torch.uint8)
    mrandom._set_cuda_rng_state = lambda *args, **kwargs: None

    # MegatronOptimizer.step -> clip_grad_norm -> clip_grad_by_total_norm_fp32 (imported by name
    # into optimizer.optimizer) asserts CUDA gradients.
    from megatron.core.optimizer import clip_grads
    from megatron.core.optimizer import optimizer as moptimizer

    clip_grads.clip_grad_by_total_norm_fp32 = clip_grad_by_total_norm_fp32
    moptimizer.clip_grad_by_total_norm_fp32 = clip_grad_by_total_norm_fp32

    proxy = _CpuTorch()
    for name in _CUDA_LITERAL_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a module moved in another megatron-core version: nothing to patch
            continue
        if getattr(module, "torch", None) is torch:
            module.torch = proxy

    _APPLIED = True
