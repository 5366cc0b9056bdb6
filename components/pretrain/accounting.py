"""Throughput, model FLOPs utilisation (MFU) and the device time of a pretraining run: pure arithmetic.

Model FLOPs follow Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU
Clusters Using Megatron-LM", appendix: per token and layer the forward pass costs
``2 * (4 h^2 + 2 h f)`` for the attention projections and the MLP, plus ``4 s h`` for the scores
and the weighted sum (full, not causal-halved, as in the paper), and the logits ``2 h V``;
backward costs twice the forward. With f = 4h this is the paper's
``72 B s l h^2 (1 + s / 6h + V / 12 l h)`` per iteration. Recomputed activations are not counted
(MFU, not hardware FLOPs utilisation).

The peak MFU divides by is ``pretrain.peak_flops_per_accelerator``: the code holds no table of
device peaks, so the params are the only source, and the metrics say so (``peak_flops_source``).
On CPU that figure is an assumption (no CPU peak is measured or looked up), and the source says
that too.

No prices here, on purpose: the stages record time only (wall seconds and accelerator-hours), and
every USD figure is computed by the continuous monitor from ``monitoring.prices``
(``monitoring.cost``). One price source: a second price key here once reported $0 for the same
hours the monitor priced at $0.10/h.
"""

from __future__ import annotations

from llm.gpt import GPTShape

PEAK_FLOPS_KEY = "pretrain.peak_flops_per_accelerator"
GPU = "gpu"
CPU_MACHINE = "cpu_machine"


def model_flops_per_token(shape: GPTShape) -> float:
    """Training FLOPs (forward + backward) per token of a ``shape`` model at full context."""
    h, f, s, layers, v = (
        shape.hidden_size,
        shape.ffn_hidden_size,
        shape.seq_length,
        shape.num_layers,
        shape.vocab_size,
    )
    forward = layers * (8 * h * h + 4 * h * f + 4 * s * h) + 2 * h * v
    return 3.0 * forward


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float, devices: int) -> float:
    """Achieved model FLOP/s over the peak of ``devices`` devices of ``peak_flops`` FLOP/s each."""
    return tokens_per_s * flops_per_token / (peak_flops * devices)


def peak_flops(params_peak: float, on_gpu: bool) -> tuple[float, str]:
    """(peak FLOP/s of one device, where that figure comes from) for MFU.

    ``params_peak``: ``pretrain.peak_flops_per_accelerator`` (FLOP/s). On GPU it is the figure the
    params (a profile) give for the device; on CPU it is an assumed figure, and the source says so.
    """
    if on_gpu:
        return float(params_peak), f"params: {PEAK_FLOPS_KEY}"
    return float(params_peak), f"params: {PEAK_FLOPS_KEY} (assumed CPU figure, not measured)"


def held_devices(world_size: int, num_nodes: int, on_gpu: bool) -> tuple[int, str]:
    """(how many, what) a job holds for its whole wall time: one GPU per rank on GPU; on CPU
    the machines (``num_nodes``), however many ranks share each one."""
    return (world_size, GPU) if on_gpu else (num_nodes, CPU_MACHINE)


def accelerator_hours(seconds: float, devices: int) -> float:
    """Device-hours held: every device of the job (``held_devices``) for the whole wall time."""
    return seconds * devices / 3600.0
