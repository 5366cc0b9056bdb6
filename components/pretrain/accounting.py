"""Throughput, model FLOPs utilisation (MFU) and cost of a pretraining run: pure arithmetic.

Model FLOPs follow Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU
Clusters Using Megatron-LM", appendix: per token and layer the forward pass costs
``2 * (4 h^2 + 2 h f)`` for the attention projections and the MLP, plus ``4 s h`` for the scores
and the weighted sum (full, not causal-halved, as in the paper), and the logits ``2 h V``;
backward costs twice the forward. With f = 4h this is the paper's
``72 B s l h^2 (1 + s / 6h + V / 12 l h)`` per iteration. Recomputed activations are not counted
(MFU, not hardware FLOPs utilisation).
"""

from __future__ import annotations

from llm.gpt import GPTShape


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


def accelerator_hours(seconds: float, devices: int) -> float:
    """Device-hours held: every device of the job for the whole wall time."""
    return seconds * devices / 3600.0


def cost(seconds: float, devices: int, price_per_hour: float) -> float:
    """Estimated cost (the price's currency) of holding ``devices`` for ``seconds``."""
    return accelerator_hours(seconds, devices) * price_per_hour
