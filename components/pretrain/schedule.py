"""The training schedule as pure functions of the step: learning rate, evaluation steps, vocab padding."""

from __future__ import annotations

import math

from components.pretrain.params import Params


def padded_vocab_size(vocab_size: int, divisible_by: int, tensor_parallel_size: int = 1) -> int:
    """Embedding rows: ``vocab_size`` rounded up to a multiple of ``divisible_by * tp`` (as
    Megatron-LM does), so every tensor-parallel shard is equal and matmuls are well aligned."""
    multiple = divisible_by * tensor_parallel_size
    return -(-vocab_size // multiple) * multiple


def lr_at(step: int, params: Params) -> float:
    """Learning rate for optimizer step ``step`` (1-based): linear warmup from 0 to ``lr`` over
    ``warmup_steps``, then cosine decay to ``min_lr`` at ``train_steps``."""
    if params.warmup_steps and step <= params.warmup_steps:
        return params.lr * step / params.warmup_steps
    decay_steps = max(params.train_steps - params.warmup_steps, 1)
    progress = min(max(step - params.warmup_steps, 0) / decay_steps, 1.0)
    return params.min_lr + 0.5 * (params.lr - params.min_lr) * (1.0 + math.cos(math.pi * progress))


def eval_steps(params: Params) -> list[int]:
    """Steps after which the model is evaluated: every ``eval_interval`` and the last step."""
    steps = list(range(params.eval_interval, params.train_steps + 1, params.eval_interval))
    if not steps or steps[-1] != params.train_steps:
        steps.append(params.train_steps)
    return steps


def checkpoint_steps(params: Params) -> list[int]:
    """Steps after which a resumable checkpoint is saved: every ``checkpoint_interval`` (if > 0)
    and the last step."""
    interval = params.checkpoint_interval
    steps = list(range(interval, params.train_steps + 1, interval)) if interval else []
    if not steps or steps[-1] != params.train_steps:
        steps.append(params.train_steps)
    return steps
