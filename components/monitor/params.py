"""Params of the monitor stage: the drift thresholds, ``llm.drift.DriftParams``, defined once in the
floor because the continuous monitor (monitoring/) judges with the same ``monitor`` section.
Import-light (stdlib and the floor's drift module, which imports no Evidently): the params loader
of every stage imports it."""

from __future__ import annotations

from llm.drift import SECTION, DriftParams, NumMethod, TextMethod  # SECTION: "monitor", named like the stage

__all__ = ["SECTION", "NumMethod", "Params", "TextMethod"]


Params = DriftParams
