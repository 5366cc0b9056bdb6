"""finetune: train a sentiment classifier on the pretrained megatron GPT.

Contract: ``run(pretrained, tokenizer, task, output, params)`` loads the GPT written by pretrain
(``pretrained/model.json`` + ``pretrained/checkpoint``), puts a pooling + linear head on it
(``llm.classifier``), trains on the ``train`` split of ``task`` (task.jsonl: {id, text,
label, split}) with AdamW (linear warmup, linear decay), class-weighted cross-entropy and early
stopping on the valid macro-F1, restores the best epoch, and writes into ``output`` (atomically):

- ``model.safetensors``, ``classifier.json``, ``tokenizer.json``: the classifier
  (``llm.classifier.load_classifier(output)`` rebuilds it);
- ``history.csv``: epoch, train_loss, valid_loss, valid_accuracy, valid_macro_f1 (a DVC plot);
- ``metrics.json``: the best epoch's valid scores, example counts, parameter counts, and the
  stage's time (never dollars: the continuous monitor prices it with ``monitoring.prices``):
  ``seconds`` (wall time of the run), ``accelerator_hours`` (``held_devices`` x hours: the pod's
  ``accelerator_count`` GPUs, at least one, on CUDA; one machine on CPU), ``held_device_kind``.

Full fine-tuning by default; ``freeze_backbone`` trains only the head, on pooled GPT features
computed once. Seeded: same inputs + params + thread count => the same weights, byte for byte.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from components.common import artifacts
from components.common.io import atomic_output_dir
from components.common.metrics import write_csv, write_metrics
from components.common.progress import Progress
from components.common.seed import stable_fraction
from components.finetune.params import Params
from llm.classifier import (
    TOKENIZER_FILE,
    Classifier,
    ClassifierConfig,
    build_classifier,
    model_device,
    save_classifier,
    tensor_state,
)
from llm.scoring import accuracy, macro_f1
from llm.task_data import (
    Example,
    class_weights,
    encode_texts,
    length_bucketed_batches,
    load_task,
    pad_batch,
    sorted_batches,
)

log = logging.getLogger(__name__)

HISTORY_FIELDS = ["epoch", "train_loss", "valid_loss", "valid_accuracy", "valid_macro_f1"]


class EarlyStopping:
    """Track the best score (higher is better); stop after ``patience`` epochs without a better one."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def update(self, epoch: int, score: float) -> bool:
        """Record ``score`` of ``epoch``; True when it is a new best (strictly better)."""
        if score > self.best:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based): linear warmup
    over ``warmup_steps`` (the first step already > 0), then linear decay towards 0 at
    ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def select_train(examples: Sequence[Example], limit: int, seed: int) -> list[Example]:
    """All examples, or a seeded subset of ``limit`` (the lowest hash of id: order-free)."""
    if not limit or limit >= len(examples):
        return list(examples)
    return sorted(examples, key=lambda e: (stable_fraction(e.id, seed), e.id))[:limit]


def _param_groups(model: Classifier, params: Params) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only (not on biases, norms); backbone lr vs head lr."""
    groups = []
    for module, lr in ((model.backbone, params.lr), (model.head, params.head_lr)):
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        decay = [p for _, p in named if p.ndim >= 2]
        no_decay = [p for _, p in named if p.ndim < 2]
        groups += [
            {"params": decay, "lr": lr, "weight_decay": params.weight_decay},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0},
        ]
    return [g for g in groups if g["params"]]


@torch.no_grad()
def _features(model: Classifier, sequences: Sequence[Sequence[int]], batch_size: int) -> torch.Tensor:
    """Pooled backbone features (N, H) in the order of ``sequences`` (for a frozen backbone)."""
    device = model_device(model)
    feats = torch.zeros(len(sequences), model.config.gpt.hidden_size, device=device)
    for batch in sorted_batches([len(s) for s in sequences], batch_size):
        ids, lengths = pad_batch([sequences[i] for i in batch], model.config.pad_id)
        feats[batch] = model.features(ids.to(device), lengths.to(device))
    return feats


@torch.no_grad()
def _logits(
    model: Classifier, sequences: Sequence[Sequence[int]], batch_size: int, feats: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits (N, K) in eval mode, in the order of ``sequences`` (or of precomputed ``feats``)."""
    was_training = model.training
    model.eval()
    try:
        if feats is not None:
            return model.classify(feats)
        device = model_device(model)
        out = torch.zeros(len(sequences), len(model.config.labels), device=device)
        for batch in sorted_batches([len(s) for s in sequences], batch_size):
            ids, lengths = pad_batch([sequences[i] for i in batch], model.config.pad_id)
            out[batch] = model(ids.to(device), lengths.to(device))
        return out
    finally:
        model.train(was_training)


def train_classifier(
    model: Classifier,
    train: tuple[list[list[int]], list[int]],
    valid: tuple[list[list[int]], list[int]],
    params: Params,
) -> tuple[list[dict[str, float]], EarlyStopping]:
    """Train ``model`` in place; leave it at its best valid macro-F1 epoch.

    ``train`` / ``valid``: (token id sequences, label indices). Returns the history rows (one
    per epoch run) and the early-stopping record (best epoch and score).
    """
    device = model_device(model)
    n_labels = len(model.config.labels)
    train_seqs, train_y = train
    valid_seqs, valid_y = valid
    y_train = torch.tensor(train_y, dtype=torch.long, device=device)
    y_valid = torch.tensor(valid_y, dtype=torch.long, device=device)
    weights = torch.tensor(class_weights(train_y, n_labels, params.class_weights), device=device)

    train_feats = valid_feats = None
    if params.freeze_backbone:
        model.backbone.requires_grad_(False)
        model.backbone.eval()
        train_feats = _features(model, train_seqs, params.eval_batch_size)
        valid_feats = _features(model, valid_seqs, params.eval_batch_size)

    optimizer = torch.optim.AdamW(_param_groups(model, params))
    steps_per_epoch = math.ceil(len(train_seqs) / params.batch_size)
    total_steps = steps_per_epoch * params.epochs
    warmup = round(params.warmup_fraction * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total_steps))
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    generator = torch.Generator().manual_seed(params.seed)
    lengths = [len(s) for s in train_seqs]
    stopper = EarlyStopping(params.patience)
    best_state: dict[str, torch.Tensor] = {}
    history: list[dict[str, float]] = []

    for epoch in range(1, params.epochs + 1):
        model.train()
        if params.freeze_backbone:
            model.backbone.eval()
        batches = length_bucketed_batches(lengths, params.batch_size, generator)
        loss_sum = 0.0
        start = time.monotonic()
        with Progress(f"finetune epoch {epoch}", total=len(batches), unit="batches") as progress:
            for batch in batches:
                if train_feats is not None:
                    logits = model.classify(train_feats[batch])
                else:
                    ids, lens = pad_batch([train_seqs[i] for i in batch], model.config.pad_id)
                    logits = model(ids.to(device), lens.to(device))
                loss = torch.nn.functional.cross_entropy(logits, y_train[batch], weight=weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if params.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(trainable, params.grad_clip)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(batch)
                progress.update(1, loss=loss.item())

        valid_logits = _logits(model, valid_seqs, params.eval_batch_size, valid_feats)
        valid_loss = torch.nn.functional.cross_entropy(valid_logits, y_valid, weight=weights).item()
        predicted = valid_logits.argmax(dim=-1).tolist()
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / len(train_seqs),
            "valid_loss": valid_loss,
            "valid_accuracy": accuracy(valid_y, predicted),
            "valid_macro_f1": macro_f1(valid_y, predicted, list(range(n_labels))),
        }
        history.append(row)
        log.info(
            "finetune epoch %d: train_loss %.4f valid_loss %.4f valid_acc %.4f valid_macro_f1 %.4f (%.1fs)",
            *(row[k] for k in HISTORY_FIELDS),
            time.monotonic() - start,
        )
        if stopper.update(epoch, row["valid_macro_f1"]):
            best_state = {k: v.clone() for k, v in tensor_state(model).items()}
        if stopper.should_stop:
            log.info("finetune: no better valid macro-F1 for %d epoch(s); stopping", stopper.bad_epochs)
            break

    model.load_state_dict(best_state, strict=False)
    return history, stopper


def held_devices(params: Params, cuda: bool) -> tuple[int, str]:
    """(how many, what) the stage holds for its wall time: on CUDA the GPUs its pod requests
    (``accelerator_count``; at least the one it trains on), on CPU one machine."""
    return (max(1, params.accelerator_count), "gpu") if cuda else (1, "cpu_machine")


def run(pretrained: str, tokenized: str, task: str, output: str, params: Params) -> dict[str, Any]:
    """Fine-tune the pretrained GPT on the task's train split; write the classifier (module doc)."""
    from llm.gpt import load_pretrained, megatron_runtime
    from llm.tokenizer import load_tokenizer, special_ids

    started = time.monotonic()
    if params.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(params.cpu_threads)
    splits = load_task(task, params.labels)
    train = select_train(splits["train"], params.max_train_examples, params.seed)
    valid = splits["valid"]
    if not train or not valid:
        raise ValueError(
            f"finetune: {task} needs train and valid examples, got {len(train)} and {len(valid)}"
        )
    tokenizer_file = Path(tokenized) / TOKENIZER_FILE if Path(tokenized).is_dir() else Path(tokenized)
    tok = load_tokenizer(tokenizer_file)
    ids = special_ids(tok)

    with megatron_runtime(seed=params.seed):
        backbone, shape = load_pretrained(pretrained)
        if params.max_length > shape.seq_length:
            raise ValueError(
                f"finetune.max_length: {params.max_length} exceeds the GPT's seq_length {shape.seq_length}"
            )
        if tok.get_vocab_size() > shape.vocab_size:
            raise ValueError(
                f"finetune: tokenizer has {tok.get_vocab_size()} tokens, the GPT only {shape.vocab_size} rows"
            )
        config = ClassifierConfig(
            gpt=shape,
            labels=list(params.labels),
            max_length=params.max_length,
            pooling=params.pooling,
            pad_id=ids["pad_id"],
            eod_id=ids["eod_id"],
            head_dropout=params.head_dropout,
        )
        torch.manual_seed(params.seed)  # the head's initial weights
        model = build_classifier(config, backbone)
        train_seqs = encode_texts(tok, [e.text for e in train], params.max_length, ids["eod_id"])
        valid_seqs = encode_texts(tok, [e.text for e in valid], params.max_length, ids["eod_id"])
        train_y = [e.label for e in train]
        history, stopper = train_classifier(
            model, (train_seqs, train_y), (valid_seqs, [e.label for e in valid]), params
        )
        best = history[stopper.best_epoch - 1]
        weights = class_weights(train_y, len(params.labels), params.class_weights)
        metrics = {
            "train_examples": len(train),
            "valid_examples": len(valid),
            "train_by_label": {lab: train_y.count(i) for i, lab in enumerate(params.labels)},
            "class_weights": dict(zip(params.labels, weights, strict=True)),
            # Share of train reviews cut at max_length (text tokens + the closing eod).
            "truncated_fraction": sum(len(s) == params.max_length for s in train_seqs) / len(train_seqs),
            "epochs_run": len(history),
            "best_epoch": stopper.best_epoch,
            "stopped_early": len(history) < params.epochs,
            "train_loss": best["train_loss"],
            "valid_loss": best["valid_loss"],
            "valid_accuracy": best["valid_accuracy"],
            "valid_macro_f1": best["valid_macro_f1"],
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }
        with atomic_output_dir(output) as out:
            save_classifier(model, out)
            shutil.copyfile(tokenizer_file, out / TOKENIZER_FILE)
            write_csv(out / artifacts.HISTORY, history, HISTORY_FIELDS)
            seconds = time.monotonic() - started
            held, kind = held_devices(params, model_device(model).type == "cuda")
            metrics.update(
                seconds=seconds,
                accelerator_hours=seconds * held / 3600.0,
                held_devices=held,
                held_device_kind=kind,
            )
            metrics = write_metrics(out, metrics)
    log.info(
        "finetune: best epoch %d, valid macro-F1 %.4f, accuracy %.4f, in %.1fs (%.4g accelerator-hours, %d %s)",
        metrics["best_epoch"],
        metrics["valid_macro_f1"],
        metrics["valid_accuracy"],
        metrics["seconds"],
        metrics["accelerator_hours"],
        metrics["held_devices"],
        metrics["held_device_kind"],
    )
    return metrics
