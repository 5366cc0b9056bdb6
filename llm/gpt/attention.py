"""Core attention for the local (non-Transformer-Engine) layer spec, on torch's fused kernel.

megatron's ``DotProductAttention`` computes attention in three unfused steps (``baddbmm`` into a
scratch buffer, masked softmax, ``bmm``) and materialises the (B, heads, T, T) score tensor.
``SDPAttention`` is the same module (same constructor, same parameters: none, same sharded
state) whose forward calls ``torch.nn.functional.scaled_dot_product_attention``: flash/fused
kernels on CPU and GPU, no score tensor kept for backward. It falls back to megatron's forward for
the features it does not cover (attention bias, packed sequences, sliding windows, softmax
offsets, query-key layer scaling, grouped-query attention).

The causal mask that ``llm.gpt.causal_inputs`` hands out is recognised and replaced
by ``is_causal=True`` (the kernel then never reads a mask); any other boolean mask is honoured
(megatron's convention: True = masked out).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType

from llm.gpt.masks import is_causal_mask


class SDPAttention(DotProductAttention):
    """``DotProductAttention`` with a fused forward (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        c = self.config
        self._fused = (
            self.softmax_offset is None
            and c.window_size is None
            and not c.apply_query_key_layer_scaling
            and self.num_attention_heads_per_partition == self.num_query_groups_per_partition
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params=None,
    ) -> torch.Tensor:
        """(sq, b, np, hn) query/key/value -> (sq, b, np * hn) context, as megatron's forward."""
        if not self._fused or attention_bias is not None or packed_seq_params is not None:
            return super().forward(
                query, key, value, attention_mask, attn_mask_type, attention_bias, packed_seq_params
            )
        sq, b = query.shape[0], query.shape[1]
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        # megatron semantics: a given mask replaces the mask type; None + causal = causal.
        # int(): under torch.jit.trace shapes are traced values, and the kernel wants a bool.
        causal = (attention_mask is None and mask_type == AttnMaskType.causal) or (
            is_causal_mask(attention_mask) and int(key.shape[0]) == int(sq)
        )
        keep = None if causal or attention_mask is None else ~attention_mask
        # (s, b, np, hn) -> (b, np, s, hn): the layout the kernel wants.
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        dropout_p = self.attention_dropout.p if self.training else 0.0
        # As in DotProductAttention: attention dropout draws from the tensor-parallel RNG stream.
        fork = (
            tensor_parallel.get_cuda_rng_tracker().fork()
            if dropout_p > 0 and not self.config.sequence_parallel
            else contextlib.nullcontext()
        )
        with fork:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=keep, dropout_p=dropout_p, is_causal=causal, scale=self.softmax_scale
            )
        # (b, np, sq, hn) -> (sq, b, np * hn)
        return out.permute(2, 0, 1, 3).reshape(sq, b, self.hidden_size_per_partition)
