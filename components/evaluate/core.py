"""evaluate: the pretrained GPT's perplexity and the classifier's scores on held-out data.

Contract: ``run(pretrained, tokenizer, finetuned, task, output, params)`` writes into ``output``
(atomically):

- ``metrics.json``: ``perplexity`` (and ``lm_loss`` in nats/token, ``lm_tokens``) of the
  pretrained GPT on the tokenize stage's test split; ``accuracy``, ``macro_f1``, ``per_class``
  precision / recall / F1 / support, the ``confusion`` matrix, and a majority-class baseline for
  the task's test split;
- ``confusion.csv``: ``actual,predicted`` one row per test example (DVC's confusion template);
- ``predictions.jsonl``: ``{id, text, label, prediction, score}`` per test example, score being
  the probability of the predicted label (the reference data of the monitor stage).

Perplexity is measured the way megatron evaluates: the test documents (eod-terminated) are
concatenated in order and cut into non-overlapping windows of ``window`` tokens, each predicting
its next ``window`` tokens; the first ``max_tokens`` tokens are scored.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from components.common.io import atomic_output_dir, write_jsonl
from components.common.metrics import write_csv, write_metrics
from components.common.progress import Progress
from components.evaluate.metrics import accuracy, confusion_counts, macro_f1, per_class, perplexity
from components.evaluate.params import Params

log = logging.getLogger(__name__)


def lm_windows(stream: np.ndarray, window: int, max_tokens: int) -> np.ndarray:
    """Windows (N, L + 1) over a token stream for next-token scoring: window k holds tokens
    ``[k*L, k*L + L]``, so inputs ``w[:-1]`` predict labels ``w[1:]`` and each stream token after
    the first is scored at most once. N = min(whole windows in the stream, max_tokens // L), at
    least 1: at most ``max_tokens`` tokens are scored unless one window is longer. A stream
    shorter than one window gives a single window of the whole stream."""
    if len(stream) < 2:
        raise ValueError("perplexity needs a stream of at least 2 tokens")
    if len(stream) - 1 < window:
        return np.asarray(stream)[None, :]
    n = min((len(stream) - 1) // window, max(1, max_tokens // window))
    return np.stack([stream[k * window : k * window + window + 1] for k in range(n)])


def stream_limit(window: int, max_tokens: int) -> int:
    """Tokens of the stream that ``lm_windows`` can use: the scored ones plus the first input."""
    return max(1, max_tokens // window) * window + 1


def read_stream(prefix: str, limit: int) -> np.ndarray:
    """The first documents of a megatron IndexedDataset, concatenated, cut to ``limit`` tokens."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(prefix)
    parts, total = [], 0
    for i in range(len(dataset)):
        if total >= limit:
            break
        doc = np.asarray(dataset[i], dtype=np.int64)
        parts.append(doc)
        total += len(doc)
    return np.concatenate(parts)[:limit] if parts else np.zeros(0, dtype=np.int64)


def lm_perplexity(model: Any, windows: np.ndarray, batch_size: int) -> dict[str, float]:
    """Sum of per-token losses of ``model`` over ``windows`` (N, L + 1) -> perplexity metrics."""
    import torch

    from components.common.gpt import token_losses
    from components.finetune.model import model_device

    device = model_device(model)
    data = torch.as_tensor(windows, dtype=torch.long)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), Progress("perplexity", total=len(data), unit="windows") as progress:
        for start in range(0, len(data), batch_size):
            batch = data[start : start + batch_size].to(device)
            losses = token_losses(model, batch[:, :-1], batch[:, 1:])  # (B, L) nats
            total += losses.double().sum().item()
            count += losses.numel()
            progress.update(len(batch))
    return {"perplexity": perplexity(total, count), "lm_loss": total / count, "lm_tokens": count}


def classification_metrics(
    actual: list[str], predicted: list[str], labels: list[str], majority: str
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class scores, confusion matrix ({actual: {predicted: n}}), and the
    accuracy of always answering ``majority`` (the train split's most common label)."""
    matrix = confusion_counts(actual, predicted, labels)
    return {
        "examples": len(actual),
        "accuracy": accuracy(actual, predicted),
        "macro_f1": macro_f1(actual, predicted, labels),
        "per_class": per_class(actual, predicted, labels),
        "confusion": {a: dict(zip(labels, row, strict=True)) for a, row in zip(labels, matrix, strict=True)},
        "majority_label": majority,
        "majority_accuracy": accuracy(actual, [majority] * len(actual)),
    }


def run(
    pretrained: str, tokenizer: str, finetuned: str, task: str, output: str, params: Params
) -> dict[str, Any]:
    """Score the pretrained GPT (perplexity) and the classifier (task split); see the module doc."""
    import torch

    from components.common.gpt import load_pretrained, megatron_runtime
    from components.common.io import read_jsonl
    from components.finetune.model import load_classifier
    from components.tokenize.core import dataset_prefix

    started = time.monotonic()
    if params.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(params.cpu_threads)
    records = list(read_jsonl(task))
    examples = [r for r in records if r["split"] == params.task_split]
    if not examples:
        raise ValueError(f"evaluate: {task} has no {params.task_split!r} examples")
    train_labels = Counter(r["label"] for r in records if r["split"] == "train")

    with megatron_runtime():
        model, shape = load_pretrained(pretrained)
        window = min(params.window or shape.seq_length, shape.seq_length)
        stream = read_stream(dataset_prefix(tokenizer, "test"), stream_limit(window, params.max_tokens))
        metrics: dict[str, Any] = lm_perplexity(
            model, lm_windows(stream, window, params.max_tokens), params.batch_size
        )
        metrics["lm_window"] = window
        del model

        classifier = load_classifier(finetuned)
        labels = classifier.labels
        unknown = sorted({r["label"] for r in examples} - set(labels))
        if unknown:
            raise ValueError(f"evaluate: {task} has labels {unknown} the classifier does not know ({labels})")
        texts = [r["text"] for r in examples]
        predicted, scores = classifier.predict(texts, params.eval_batch_size)

    actual = [r["label"] for r in examples]
    # Ties go to the label listed first, so the baseline does not depend on file order.
    majority = max(labels, key=lambda lab: (train_labels[lab], -labels.index(lab)))
    metrics.update(classification_metrics(actual, predicted, labels, majority))
    metrics["task_split"] = params.task_split
    with atomic_output_dir(output) as out:
        write_csv(
            Path(out) / "confusion.csv",
            ({"actual": a, "predicted": p} for a, p in zip(actual, predicted, strict=True)),
            ["actual", "predicted"],
        )
        write_jsonl(
            Path(out) / "predictions.jsonl",
            (
                {"id": r["id"], "text": r["text"], "label": r["label"], "prediction": p, "score": round(s, 6)}
                for r, p, s in zip(examples, predicted, scores, strict=True)
            ),
        )
        metrics = write_metrics(out, metrics)
    log.info(
        "evaluate: perplexity %.2f over %d tokens; %s accuracy %.4f, macro-F1 %.4f (majority %.4f), in %.1fs",
        metrics["perplexity"],
        metrics["lm_tokens"],
        params.task_split,
        metrics["accuracy"],
        metrics["macro_f1"],
        metrics["majority_accuracy"],
        time.monotonic() - started,
    )
    return metrics
