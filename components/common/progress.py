"""Progress lines for long work: at most one line every ``every_s`` seconds, plus the last."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("progress")


class Progress:
    """``with Progress("clean", total=n) as p: p.update(k)`` logs done/total, rate and ETA."""

    def __init__(self, what: str, total: int | None = None, unit: str = "items", every_s: float = 5.0):
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.done = 0
        self.start = self.last = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self._log(final=True)

    def update(self, n: int = 1, **extra: float) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._log(**extra)

    def _log(self, final: bool = False, **extra: float) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.what}: {self.done}"]
        if self.total:
            parts[0] += f"/{self.total} ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and not final and rate > 0:
            parts.append(f"eta {(self.total - self.done) / rate:.0f}s")
        parts += [f"{k}={v:.4g}" for k, v in extra.items()]
        if final:
            parts.append(f"done in {elapsed:.1f}s")
        log.info(", ".join(parts))
