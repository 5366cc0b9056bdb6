"""Training and validation samples: megatron-core ``GPTDataset`` over the tokenize stage's files.

Samples come from ``BlendedMegatronDatasetBuilder`` (megatron's compiled index helpers):
documents are concatenated with their eod tokens and cut into ``seq_length + 1`` token windows,
shuffled with the seed; several sources are blended by weight (``pretrain.data.sources``).

Which sample goes where is a pure function of the step (``step_sample_ids``), never of the
process layout or of how many times the run was resumed: that is what makes a resumed run and a
data-parallel run see the same data as an uninterrupted single process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from components.pretrain.params import Params


def source_prefix(data: str | Path, split: str, name: str) -> str:
    """The IndexedDataset prefix (no .bin/.idx) of source ``name`` for ``split`` in ``data``."""
    return str(Path(data) / f"{split}_{name}_document")


def source_files(data: str | Path, params: Params) -> list[Path]:
    """Every .bin/.idx file the configured blend reads (for checks and the run fingerprint)."""
    splits = ["train"] if params.data.split else ["train", "valid"]
    return [
        Path(source_prefix(data, split, s.name) + ext)
        for s in params.data.sources
        for split in splits
        for ext in (".idx", ".bin")
    ]


def blend_config(data: str | Path, params: Params) -> dict[str, Any]:
    """The ``blend`` / ``blend_per_split`` / ``split`` arguments of megatron's dataset config.

    One source: no weights (megatron then reads it directly, without a BlendedDataset).
    ``params.data.split`` set: each source's train file is split by those ratios.
    """
    names = [s.name for s in params.data.sources]
    weights = [s.weight for s in params.data.sources] if len(names) > 1 else None
    if params.data.split:
        return {
            "blend": ([source_prefix(data, "train", n) for n in names], weights),
            "split": params.data.split,
        }
    # The test split is the evaluate stage's business: not built here.
    per_split = [([source_prefix(data, split, n) for n in names], weights) for split in ("train", "valid")]
    return {"blend_per_split": [*per_split, None]}


@dataclasses.dataclass(frozen=True)
class _DatasetTokenizer:
    """What GPTDataset needs from a tokenizer: the eod id (no pad id: pretraining never pads)."""

    vocab_size: int
    eod: int

    @property
    def unique_identifiers(self) -> dict[str, Any]:
        return {"class": "tokenizer.json", "vocab_size": self.vocab_size, "eod": self.eod}


def build_datasets(
    data: str | Path, params: Params, vocab_size: int, eod: int, cache_dir: str | Path
) -> tuple[Any, Any]:
    """(train, valid) megatron ``GPTDataset``s (or blends) with enough samples for the run.

    ``cache_dir`` receives megatron's index caches (never the input folder, which DVC tracks).
    Every rank of a job must call this (megatron builds on rank 0 first, then the others read
    the cache).
    """
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    missing = [str(p) for p in source_files(data, params) if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"pretrain: missing tokenized files {missing[:4]} (see pretrain.data.sources)"
        )
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    config = GPTDatasetConfig(
        random_seed=params.seed,
        sequence_length=params.model.seq_length,
        path_to_cache=str(cache_dir),
        tokenizer=_DatasetTokenizer(vocab_size, eod),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,  # the model helpers build the causal mask
        mmap_bin_files=True,
        **blend_config(data, params),
    )
    sizes = [params.train_steps * params.global_batch_size, params.eval_iters * params.micro_batch_size, 0]
    train, valid, _test = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config).build()
    if valid is None or len(valid) < sizes[1]:
        raise ValueError(f"{data}: the valid split is too small for {sizes[1]} samples")
    return train, valid


def step_sample_ids(step: int, params: Params, dp_rank: int = 0) -> list[list[int]]:
    """Sample indices of optimizer step ``step`` (1-based) for data-parallel rank ``dp_rank``:
    one list per micro batch.

    The global batch of step s is samples ``[(s-1) * G, s * G)``. As in megatron's pretraining
    sampler, each micro-batch round takes ``micro_batch_size * dp`` consecutive samples and rank
    r gets the r-th slice, so the union over ranks is the global batch whatever the layout.
    """
    mb, dp = params.micro_batch_size, params.data_parallel_size
    start = (step - 1) * params.global_batch_size
    return [
        list(range(start + (m * dp + dp_rank) * mb, start + (m * dp + dp_rank + 1) * mb))
        for m in range(params.grad_accumulation)
    ]


def eval_sample_ids(params: Params, dp_rank: int = 0) -> list[list[int]]:
    """Validation micro batches of ``dp_rank``: the first ``eval_iters`` micro batches of the
    valid split (the same every time), dealt round-robin over data-parallel ranks."""
    mb, dp = params.micro_batch_size, params.data_parallel_size
    return [list(range(i * mb, (i + 1) * mb)) for i in range(params.eval_iters) if i % dp == dp_rank]


def collate(dataset, ids: Sequence[int]) -> dict[str, Any]:
    """{"tokens": (B, T) long, "labels": (B, T) long, "loss_mask": (B, T) float} for ``ids``."""
    import torch

    samples = [dataset[i] for i in ids]
    return {key: torch.stack([s[key] for s in samples]) for key in ("tokens", "labels", "loss_mask")}


def micro_batches(dataset, start: int, count: int, size: int) -> Iterator[dict[str, Any]]:
    """``count`` micro batches of ``size`` consecutive samples from sample ``start`` on."""
    for b in range(count):
        yield collate(dataset, range(start + b * size, start + (b + 1) * size))
