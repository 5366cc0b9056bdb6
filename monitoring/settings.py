"""Settings of the continuous monitor: the ``monitoring`` section of params.yaml (stdlib only: imported by the
params loader of every stage)."""

from __future__ import annotations

from dataclasses import dataclass

SECTION = "monitoring"


@dataclass(frozen=True)
class Settings:
    """The ``monitoring`` section of params.yaml."""
