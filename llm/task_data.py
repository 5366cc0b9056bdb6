"""Task data for the classifier: reading task.jsonl, token ids, padding, batches, class weights.

Reviews are encoded with the pretraining tokenizer, cut to ``max_length - 1`` tokens and closed
with ``<|endoftext|>`` (the token the GPT saw at every document end, so "last" pooling reads a
position that has attended to the whole review). Batches are right-padded with ``<pad>``: with a
causal mask, padding after a sequence cannot change its hidden states, and pooling ignores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.common.io import read_jsonl

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

TASK_SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: int  # index into the label list


def load_task(task: str, labels: Sequence[str]) -> dict[str, list[Example]]:
    """Examples of task.jsonl ({id, text, label, split}) per split, in file order.

    A label outside ``labels`` or a split outside train/valid/test is an error naming the record.
    """
    index = {label: i for i, label in enumerate(labels)}
    splits: dict[str, list[Example]] = {s: [] for s in TASK_SPLITS}
    for record in read_jsonl(task):
        label, split = record.get("label"), record.get("split")
        if label not in index:
            raise ValueError(
                f"{task}: record {record.get('id')!r} has label {label!r}, not one of {list(labels)}"
            )
        if split not in splits:
            raise ValueError(
                f"{task}: record {record.get('id')!r} has split {split!r}, not one of {TASK_SPLITS}"
            )
        splits[split].append(Example(str(record["id"]), str(record["text"]), index[label]))
    return splits


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_length: int, eod_id: int) -> list[list[int]]:
    """Token ids per text: the first ``max_length - 1`` text tokens, then ``eod_id``."""
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [[*e.ids[: max_length - 1], eod_id] for e in encodings]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence: ``(input_ids (B, T) long, lengths (B,) long)``."""
    import torch

    lengths = [len(s) for s in sequences]
    width = max(lengths)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return ids, torch.tensor(lengths, dtype=torch.long)


def class_weights(label_ids: Sequence[int], n_classes: int, mode: str = "balanced") -> list[float]:
    """Loss weight per class. ``balanced``: n / (k * n_c) (scikit-learn's rule; 1.0 everywhere for
    balanced data); a class absent from ``label_ids`` gets 0. ``none``: all 1.0."""
    if mode == "none":
        return [1.0] * n_classes
    if mode != "balanced":
        raise ValueError(f"unknown class weight mode {mode!r}")
    counts = [0] * n_classes
    for y in label_ids:
        counts[y] += 1
    n = len(label_ids)
    return [n / (n_classes * c) if c else 0.0 for c in counts]


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, generator: Any, bucket_batches: int = 50
) -> list[list[int]]:
    """Shuffled batches of indices in which examples of similar length sit together.

    The indices are shuffled, cut into pools of ``bucket_batches`` batches, each pool sorted by
    length and cut into batches, and the batches shuffled again: batches stay random but need
    little padding (reviews run from a few to ``max_length`` tokens). ``generator``: a seeded
    ``torch.Generator``, so the order is a function of the seed. Every index appears once.
    """
    import torch

    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of indices sorted by length (for scoring: little padding, order restored by index)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
