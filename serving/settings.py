"""Settings of the model server: the ``serving`` section of params.yaml (stdlib only: imported by the
params loader of every stage)."""

from __future__ import annotations

from dataclasses import dataclass

SECTION = "serving"


@dataclass(frozen=True)
class Settings:
    """The ``serving`` section of params.yaml."""
