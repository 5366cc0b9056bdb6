"""Params of the report stage (stdlib only: imported by the params loader of every stage)."""

from __future__ import annotations

from dataclasses import dataclass

SECTION = "report"


@dataclass(frozen=True)
class Params:
    """The ``report`` section of params.yaml."""

    curve_points: int = 400  # most points drawn per loss curve; longer curves are thinned evenly (points)

    def __post_init__(self) -> None:
        if self.curve_points < 2:
            raise ValueError(f"{SECTION}.curve_points: must be >= 2, got {self.curve_points!r}")
