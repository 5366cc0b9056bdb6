"""Known library noise, hidden on both doors by default; ``LLM_VERBOSE=1`` shows all of it.

Every stage run printed the same library messages, none about the run itself, which buried the
lines that are:

- megatron's Transformer Engine / Apex fallback UserWarnings (7 per GPT stage): on a machine
  without them megatron uses its local implementations, which is what the CPU path is built on;
- megatron's "full scope is deprecated" notice, raised by its own default ``cuda_graph_scope``;
- torch.distributed.checkpoint's FutureWarnings about ``load_state_dict`` and ShardedTensor,
  raised by megatron's dist_checkpointing on every checkpoint load;
- Beam's INFO lines "Converting string literal type hint to Any" (one per annotated DoFn method:
  the modules use postponed annotations, which Beam reads as strings).

``hide_library_noise()`` counts what it hides; ``hidden_summary()`` is the one line the stage ends
with, naming what was hidden and how to see it. Anything else (other warnings, Beam's warnings and
errors) is shown as before.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import Counter

VERBOSE_ENV = "LLM_VERBOSE"

# (what the summary calls it, the warning category, a pattern of its message)
WARNINGS: tuple[tuple[str, type[Warning], re.Pattern[str]], ...] = (
    (
        "Transformer Engine/Apex fallbacks",
        UserWarning,
        re.compile(r"Transformer Engine and Apex are not installed|Apex is not installed"),
    ),
    ("megatron's cuda graph scope notice", UserWarning, re.compile(r"full scope is deprecated")),
    (
        "torch checkpoint deprecations",
        FutureWarning,
        re.compile(r"`load_state_dict` is deprecated|Please use DTensor instead"),
    ),
)
BEAM_TYPEHINTS_LOGGER = "apache_beam.typehints.native_type_compatibility"
BEAM_TYPEHINTS = "Beam's type-hint INFO lines"
_BEAM_TYPEHINT_MESSAGE = re.compile(r"^Converting string literal type hint to Any")

hidden: Counter[str] = Counter()


class _BeamTypehintFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.INFO and _BEAM_TYPEHINT_MESSAGE.match(str(record.msg)):
            hidden[BEAM_TYPEHINTS] += 1
            return False
        return True


def hide_library_noise() -> bool:
    """Hide the known messages in this process (idempotent); False when ``LLM_VERBOSE=1`` asks
    to see everything."""
    if os.environ.get(VERBOSE_ENV) == "1":
        return False
    if getattr(warnings.showwarning, "_hides_library_noise", False):
        return True
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        for name, kind, pattern in WARNINGS:
            if issubclass(category, kind) and pattern.search(text):
                hidden[name] += 1
                return
        shown(message, category, filename, lineno, file, line)

    showwarning._hides_library_noise = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning
    beam = logging.getLogger(BEAM_TYPEHINTS_LOGGER)
    if not any(isinstance(f, _BeamTypehintFilter) for f in beam.filters):
        beam.addFilter(_BeamTypehintFilter())
    return True


def hidden_summary() -> str | None:
    """``hid 9 known library messages (Transformer Engine/Apex fallbacks 7, ...); LLM_VERBOSE=1
    shows them``, or None when nothing was hidden."""
    if not hidden:
        return None
    parts = ", ".join(f"{name} {count}" for name, count in sorted(hidden.items()))
    return f"hid {sum(hidden.values())} known library messages ({parts}); {VERBOSE_ENV}=1 shows them"
