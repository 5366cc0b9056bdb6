"""The GPT shape of a pretraining run: from params and the tokenizer (used by the stage entry and
by every rank the launcher starts)."""

from __future__ import annotations

from pathlib import Path

from components.pretrain.params import Params
from components.pretrain.schedule import padded_vocab_size
from llm.formats import TOKENIZER_FILE
from llm.gpt import GPTShape
from llm.tokenizer import EOD_TOKEN


def gpt_shape(params: Params, vocab_size: int) -> GPTShape:
    """The model shape for a tokenizer of ``vocab_size`` tokens."""
    m = params.model
    return GPTShape(
        vocab_size=padded_vocab_size(
            vocab_size, params.make_vocab_size_divisible_by, params.tensor_parallel_size
        ),
        seq_length=m.seq_length,
        num_layers=m.num_layers,
        hidden_size=m.hidden_size,
        num_attention_heads=m.num_attention_heads,
        ffn_hidden_size=m.ffn_hidden_size,
        position_embedding_type=m.position_embedding_type,
        tie_embeddings=m.tie_embeddings,
        normalization=m.normalization,
        init_method_std=m.init_method_std,
        hidden_dropout=m.hidden_dropout,
        attention_dropout=m.attention_dropout,
    )


def tokenizer_info(data: str | Path) -> tuple[int, int]:
    """``(vocab_size, eod_id)`` of ``data/tokenizer.json``."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(data) / TOKENIZER_FILE))
    eod = tokenizer.token_to_id(EOD_TOKEN)
    if eod is None:
        raise ValueError(f"{data}/{TOKENIZER_FILE}: no {EOD_TOKEN} token")
    return tokenizer.get_vocab_size(), eod
