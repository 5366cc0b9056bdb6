"""The tokenizer every stage and the server share: a byte-level BPE (Hugging Face ``tokenizers``)
with ``<|endoftext|>`` = id 0 and ``<pad>`` = id 1. The tokenize stage trains it; everything else
loads it from ``tokenizer.json``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from llm.formats import TOKENIZER_FILE

if TYPE_CHECKING:
    from tokenizers import Tokenizer

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"
# Order fixes the ids: <|endoftext|> = 0, <pad> = 1.
SPECIAL_TOKENS: tuple[str, ...] = (EOD_TOKEN, PAD_TOKEN)


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE pipeline (GPT-2 style pre-tokenization, no normalizer).

    No normalizer and no prefix space keep ``decode(encode(text)) == text`` exact for any text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def as_data_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    # Document text is data: a literal "<|endoftext|>" inside an article must encode as its bytes,
    # not as the control token (that would split the document and break the round trip).
    tokenizer.encode_special_tokens = True
    return tokenizer


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load ``tokenizer.json`` (a file, or a folder holding it) for encoding data text."""
    from tokenizers import Tokenizer

    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    return as_data_tokenizer(Tokenizer.from_file(str(path)))


def special_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """{"eod_id": ..., "pad_id": ...} of a tokenizer trained here."""
    eod, pad = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)
    if eod is None or pad is None:
        raise ValueError(f"tokenizer lacks the special tokens {SPECIAL_TOKENS}")
    return {"eod_id": eod, "pad_id": pad}
