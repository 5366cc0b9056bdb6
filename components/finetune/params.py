"""Params of the finetune stage (stdlib only: imported by the params loader of every stage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from components.common.params import check_accelerator, check_fraction, check_positive

SECTION = "finetune"


@dataclass(frozen=True)
class Params:
    """The ``finetune`` section of params.yaml. Defaults are the CPU demo (about 2-3 min on 2 cores)."""

    labels: list[str] = field(default_factory=lambda: ["negative", "positive"])  # classes, in output order
    pooling: Literal["mean", "last"] = "last"  # last (closing eod) token, or mean over non-pad tokens (name)
    max_length: int = 64  # tokens per review incl. the closing <|endoftext|>; longer ones are cut (tokens)
    freeze_backbone: bool = False  # train only the head on frozen GPT features (flag)
    epochs: int = 2  # most passes over the train split (epochs)
    batch_size: int = 32  # reviews per optimizer step (examples)
    lr: float = 2.0e-4  # peak AdamW learning rate of the GPT backbone (step size)
    head_lr: float = 1.0e-3  # peak AdamW learning rate of the classification head (step size)
    weight_decay: float = 0.01  # AdamW decoupled weight decay on weight matrices (fraction per unit lr)
    warmup_fraction: float = 0.1  # share of all steps with linear warmup; then linear decay to 0 (0-1)
    grad_clip: float = 1.0  # max global L2 norm of the gradient; 0 disables clipping (norm)
    head_dropout: float = 0.1  # dropout on the pooled features before the head (probability)
    class_weights: Literal["balanced", "none"] = "balanced"  # loss weight n/(k*n_c) per class, or 1 (name)
    patience: int = 1  # epochs without a better valid macro-F1 before stopping early (epochs)
    max_train_examples: int = 0  # use at most this many train reviews, 0 = all (examples)
    eval_batch_size: int = 128  # reviews per forward pass when scoring valid (examples)
    seed: int = 0  # seed of the head's weights, batch order and dropout (integer)
    cpu_threads: int = 2  # torch CPU threads, fixed for reproducible sums; 0 = torch default (threads)
    accelerator_type: str = (
        ""  # Kubernetes resource of the Kubeflow pod's devices, e.g. nvidia.com/gpu (name)
    )
    accelerator_count: int = 0  # devices requested by the Kubeflow finetune pod; 0 = CPU only (count)

    def __post_init__(self) -> None:
        check_accelerator(SECTION, self.accelerator_type, self.accelerator_count)
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{SECTION}.labels: need at least 2 distinct labels, got {self.labels!r}")
        if self.max_length < 2:  # room for one text token besides the closing <|endoftext|>
            raise ValueError(f"{SECTION}.max_length: must be >= 2, got {self.max_length!r}")
        check_positive(
            SECTION,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            head_lr=self.head_lr,
            patience=self.patience,
            eval_batch_size=self.eval_batch_size,
        )
        check_fraction(SECTION, warmup_fraction=self.warmup_fraction, head_dropout=self.head_dropout)
        for key in ("weight_decay", "grad_clip", "max_train_examples", "cpu_threads"):
            if getattr(self, key) < 0:
                raise ValueError(f"{SECTION}.{key}: must be >= 0, got {getattr(self, key)!r}")
