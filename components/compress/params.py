"""Params of the compress stage (stdlib only: imported by the params loader of every stage)."""

from __future__ import annotations

from dataclasses import dataclass, field

from components.common.artifacts import VARIANTS
from components.common.params import check_fraction, check_positive

SECTION = "compress"
__all__ = ["VARIANTS", "Params"]  # the variants: one model folder each in the output


@dataclass(frozen=True)
class Params:
    """The ``compress`` section of params.yaml. Defaults are the CPU demo (a few minutes on 2 cores)."""

    variants: list[str] = field(
        default_factory=lambda: list(VARIANTS)
    )  # variants to build (names: int8, pruned, distilled)
    prune_sparsity: float = 0.3  # share of each decoder weight matrix zeroed, smallest |w| first (0-1)
    distill_layers: int = (
        2  # transformer layers of the student, copied from evenly spaced teacher layers (layers)
    )
    distill_epochs: int = 1  # passes of the student over the distillation examples (epochs)
    distill_max_examples: int = 3000  # train reviews used for distillation, 0 = all (examples)
    distill_batch_size: int = 32  # reviews per student optimizer step (examples)
    distill_lr: float = 3.0e-4  # AdamW learning rate of the student (step size)
    distill_temperature: float = 2.0  # softmax temperature of teacher and student soft targets (ratio)
    distill_alpha: float = 0.7  # weight of the soft-target KL loss; 1 - alpha on the hard labels (0-1)
    eval_batch_size: int = 128  # reviews per forward pass when scoring (examples)
    seed: int = 0  # seed of the example choice, batch order and student init (integer)
    cpu_threads: int = 2  # torch CPU threads, fixed for reproducible sums; 0 = torch default (threads)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown or len(set(self.variants)) != len(self.variants):
            raise ValueError(
                f"{SECTION}.variants: expected distinct names among {list(VARIANTS)}, got {self.variants!r}"
            )
        check_positive(
            SECTION,
            distill_layers=self.distill_layers,
            distill_epochs=self.distill_epochs,
            distill_batch_size=self.distill_batch_size,
            distill_lr=self.distill_lr,
            distill_temperature=self.distill_temperature,
            eval_batch_size=self.eval_batch_size,
        )
        check_fraction(SECTION, prune_sparsity=self.prune_sparsity, distill_alpha=self.distill_alpha)
        for key in ("distill_max_examples", "cpu_threads"):
            if getattr(self, key) < 0:
                raise ValueError(f"{SECTION}.{key}: must be >= 0, got {getattr(self, key)!r}")
