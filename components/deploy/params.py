"""Params of the deploy stage (stdlib only: imported by the params loader of every stage). The
model server's own settings (request limits, micro-batching, log flushing) are not here: they are
the ``serving`` section, owned by ``serving.settings``."""

from __future__ import annotations

from dataclasses import dataclass

SECTION = "deploy"


@dataclass(frozen=True)
class Params:
    """The ``deploy`` section of params.yaml."""

    smoke_examples: int = 64  # reference texts the released model must label as evaluate did (examples)

    def __post_init__(self) -> None:
        if self.smoke_examples < 0:
            raise ValueError(f"{SECTION}.smoke_examples: must be >= 0, got {self.smoke_examples!r}")
