"""Params of the sft stage (stdlib only: imported by the params loader of every stage)."""

from __future__ import annotations

from dataclasses import dataclass, field

from components.common.params import check_accelerator, check_fraction, check_positive

SECTION = "sft"


@dataclass(frozen=True)
class Params:
    """The ``sft`` section of params.yaml. Defaults are the CPU demo (well under a minute on 2 cores)."""

    steps: int = 16  # optimizer steps (steps)
    batch_size: int = 8  # prompt/response pairs per optimizer step (pairs)
    lr: float = 3.0e-4  # peak AdamW learning rate after warmup (step size)
    min_lr: float = 3.0e-5  # learning rate at the end of the cosine decay (step size)
    warmup_steps: int = 2  # linear warmup from 0 to lr (steps)
    weight_decay: float = (
        0.01  # AdamW decoupled weight decay on matrices, none on biases/norms (fraction per unit lr)
    )
    grad_clip: float = 1.0  # max global L2 norm of the gradient; 0 disables clipping (norm)
    max_seq_tokens: int = 256  # most tokens of prompt + response + <|endoftext|>, capped by the GPT's seq_length; the prompt is cut from the left (tokens)
    valid_fraction: float = (
        0.1  # share of rows without a split (by hash of prompt + response) held out as valid (0-1)
    )
    valid_interval: int = 8  # valid loss every N steps, and before the first and after the last (steps)
    valid_examples: int = (
        16  # most valid pairs scored per evaluation, the same ones each time; 0 = all (pairs)
    )
    eval_batch_size: int = 16  # pairs per forward pass when scoring valid (pairs)
    task: str = "qa"  # generator.json's task name (name)
    max_new_tokens: int = 16  # generator.json's default generation length (tokens)
    stop: list[str] = field(default_factory=lambda: ["\n"])  # generator.json's stop texts (texts)
    # generator.json's choice_template: a choice written as the response SFT trains on, so POST
    # /generate's choices and evaluate's ranked answers score what the model learned to produce.
    choice_template: str = " {choice}\n"  # (text holding {choice})
    seed: int = 0  # seed of the batch order, dropout and the hash split (integer)
    cpu_threads: int = 2  # torch CPU threads, fixed for reproducible sums; 0 = torch default (threads)
    accelerator_type: str = (
        ""  # Kubernetes resource of the Kubeflow pod's devices, e.g. nvidia.com/gpu (name)
    )
    accelerator_count: int = 0  # devices requested by the Kubeflow sft pod; 0 = CPU only (count)

    def __post_init__(self) -> None:
        check_accelerator(SECTION, self.accelerator_type, self.accelerator_count)
        if "{choice}" not in self.choice_template:
            raise ValueError(f"{SECTION}.choice_template: must hold {{choice}}, got {self.choice_template!r}")
        if self.max_seq_tokens < 3:  # one prompt token, one response token, the end token
            raise ValueError(f"{SECTION}.max_seq_tokens: must be >= 3, got {self.max_seq_tokens!r}")
        check_positive(
            SECTION,
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            valid_interval=self.valid_interval,
            eval_batch_size=self.eval_batch_size,
            max_new_tokens=self.max_new_tokens,
        )
        check_fraction(SECTION, valid_fraction=self.valid_fraction)
        if self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(f"{SECTION}.min_lr: must be within [0, lr={self.lr}], got {self.min_lr!r}")
        for key in ("warmup_steps", "weight_decay", "grad_clip", "valid_examples", "cpu_threads"):
            if getattr(self, key) < 0:
                raise ValueError(f"{SECTION}.{key}: must be >= 0, got {getattr(self, key)!r}")
        if not self.task:
            raise ValueError(f"{SECTION}.task: must be a non-empty name")
