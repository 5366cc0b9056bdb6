"""Seeding and stable hashing, so every stage is deterministic (DESIGN rule 8)."""

from __future__ import annotations

import hashlib
import random


def stable_hash(text: str, seed: int = 0) -> int:
    """A 64-bit hash that does not change between processes (unlike ``hash()``)."""
    digest = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def stable_fraction(text: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by ``text`` and ``seed``: for seeded, order-free splits."""
    return stable_hash(text, seed) / 2**64


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if imported) torch."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass
    import sys

    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
