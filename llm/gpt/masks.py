"""Causal attention inputs, shared by the GPT builder and the SDPA attention (no megatron import)."""

from __future__ import annotations

import torch

_MASKS: dict[tuple[int, str], torch.Tensor] = {}


def is_causal_mask(mask: torch.Tensor | None) -> bool:
    """True when ``mask`` is one of the causal masks handed out by ``causal_inputs`` (so
    attention can use the kernel's built-in causal masking instead of reading the mask)."""
    return mask is not None and any(mask is m for m in _MASKS.values())


def causal_inputs(input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(position_ids (B, T), attention_mask (1, 1, T, T))`` for a batch of token ids.

    megatron masks where the mask is True, so the mask is the strict upper triangle. Passing it
    explicitly (rather than None) also avoids megatron's default mask, which it builds on "cuda".
    """
    b, t = input_ids.shape
    device = input_ids.device
    key = (t, str(device))
    if key not in _MASKS:
        # Made outside inference mode even when first asked for inside it (the classifier's
        # inference_mode forward): an inference tensor in this cache would break a later training
        # forward that saves the mask for backward (activation recomputation).
        with torch.inference_mode(False):
            _MASKS[key] = torch.triu(torch.ones(1, 1, t, t, dtype=torch.bool, device=device), diagonal=1)
    positions = torch.arange(t, device=device).unsqueeze(0).expand(b, t)
    return positions, _MASKS[key]
