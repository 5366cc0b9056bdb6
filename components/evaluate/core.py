"""evaluate: the pretrained GPT's perplexity and the classifier's scores on held-out data.

Contract: ``run(pretrained, tokenizer, finetuned, task, output, params)`` writes into ``output``
(atomically):

- ``metrics.json``: ``perplexity`` (and ``lm_loss`` in nats/token, ``lm_tokens``) of the
  pretrained GPT on the tokenize stage's test split; ``accuracy``, ``macro_f1``, ``per_class``
  precision / recall / F1 / support, the ``confusion`` matrix, and a majority-class baseline for
  the task's test split;
- ``confusion.csv``: ``actual,predicted`` one row per test example (DVC's confusion template);
- ``predictions.jsonl``: ``{id, text, label, prediction, score}`` per test example, score being
  the probability of the predicted label (the reference data of the monitor stage);
- ``models.json`` / ``table.md``: one row per model: the fine-tuned classifier (``finetuned``),
  every variant folder under ``candidates`` (the compress stage's output, by folder name) and the
  TF-IDF + logistic regression ``baseline`` (trained on the train split in this run): accuracy,
  macro-F1, per-class precision / recall, ECE, latency p50 / p95 of single-review requests (ms),
  batch throughput (reviews/s), size on disk (bytes), parameter count and ``tokens_per_review``
  (mean tokens the model reads per test review, as the server counts them); the baseline row
  also ``fit_seconds`` (wall seconds of its fit on one CPU machine: its training cost). Latency,
  throughput and fit time are wall-clock measurements (noisy on a shared machine), so they are
  kept out of ``metrics.json``, which stays deterministic;
- ``baseline/``: the fitted baseline as a ``tfidf-logreg`` model folder (``llm.baseline``: JSON and
  safetensors, no pickle), so the select stage may ship it like any other model. Its row is
  scored and timed through that saved folder as the server loads it, after checking that the
  folder reproduces scikit-learn's labels and probabilities on the scored split (``BaselineMismatch``
  otherwise). With ``params.baseline`` off it holds only ``NOT_SHIPPED.json`` (the reason);
- ``predictions/<model>.jsonl``: the predictions.jsonl of every model folder (fine-tuned, variants
  and the baseline), for the smoke test of whichever model the select stage ships;
- with ``sft`` and ``qa`` (``params.qa.enabled``): ``qa.json`` / ``qa_table.md`` (the generative
  table: frequent-candidate baseline, pretrained, sft, sft-int8), ``generations.jsonl`` (the sft
  model's test generations, the monitor's reference) and ``metrics.json``'s ``qa`` section; see
  ``components.evaluate.generative``.

Perplexity is measured the way megatron evaluates: the test documents (eod-terminated) are
concatenated in order and cut into non-overlapping windows of ``window`` tokens, each predicting
its next ``window`` tokens; the first ``max_tokens`` tokens are scored.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from components.common import artifacts as a
from components.common.io import atomic_output_dir, write_json, write_jsonl
from components.common.metrics import write_csv, write_metrics
from components.common.progress import Progress
from components.evaluate.params import Params
from llm.formats import CONFIG_FILE, WEIGHTS_FILE, model_files
from llm.scoring import (
    accuracy,
    confusion_counts,
    expected_calibration_error,
    macro_f1,
    per_class,
    percentile,
    perplexity,
)

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

    from llm.classifier import model_device
    from llm.gpt import token_losses

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


FINETUNED = "finetuned"  # the row name of the fine-tuned float model
BASELINE = "baseline"  # the row name of the TF-IDF + logistic regression baseline
TABLE_COLUMNS = (
    ("model", "model", "{}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("macro_f1", "macro-F1", "{:.4f}"),
    ("ece", "ECE", "{:.4f}"),
    ("latency_p50_ms", "p50 ms", "{:.1f}"),
    ("latency_p95_ms", "p95 ms", "{:.1f}"),
    ("throughput_per_s", "reviews/s", "{:.0f}"),
    ("size_mb", "size MB", "{:.2f}"),
    ("parameters", "parameters", "{:,}"),
)


def score_row(
    actual: list[str], predicted: list[str], confidences: list[float], labels: list[str], bins: int
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision / recall / F1 and ECE of one model's predictions."""
    return {
        "accuracy": accuracy(actual, predicted),
        "macro_f1": macro_f1(actual, predicted, labels),
        "per_class": per_class(actual, predicted, labels),
        "ece": expected_calibration_error(
            confidences, [a == p for a, p in zip(actual, predicted, strict=True)], bins
        ),
    }


def timing(predictors: dict[str, Any], texts: list[str], params: Params) -> dict[str, dict[str, float]]:
    """Wall-clock speed of each ``predict(texts)`` in ``predictors`` (name -> callable):
    latency p50 / p95 (ms) over ``latency_requests`` single-review calls and throughput
    (reviews/s) of ``throughput_examples`` reviews in one call (the best of 3 tries).

    The models are timed *interleaved* (request i goes to every model in turn, the order rotating
    with i), so load from other processes on a shared machine hits all of them alike and the
    comparison stays fair even when the absolute numbers are noisy. Five warm-up calls each first.
    """
    names = list(predictors)
    for name in names:
        for text in texts[:5]:
            predictors[name]([text])
    latencies: dict[str, list[float]] = {name: [] for name in names}
    for i in range(params.latency_requests):
        text = texts[i % len(texts)]
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            start = time.perf_counter()
            predictors[name]([text])
            latencies[name].append((time.perf_counter() - start) * 1000.0)
    batch = [texts[i % len(texts)] for i in range(params.throughput_examples)]
    best: dict[str, float] = {name: float("inf") for name in names}
    for _ in range(3):
        for name in names:
            start = time.perf_counter()
            predictors[name](batch)
            best[name] = min(best[name], time.perf_counter() - start)
    return {
        name: {
            "latency_p50_ms": percentile(latencies[name], 50),
            "latency_p95_ms": percentile(latencies[name], 95),
            "throughput_per_s": len(batch) / best[name] if best[name] > 0 else 0.0,
        }
        for name in names
    }


def mean_tokens(model: Any, texts: list[str]) -> float:
    """Mean tokens ``model`` reads per text (its ``token_counts``: what the server logs as a
    request's tokens), over ``texts``; 0.0 for none. The per-1M-token serving estimate divides by it."""
    counts = model.token_counts(texts)
    return float(sum(counts)) / len(counts) if counts else 0.0


def folder_size(directory: str | Path) -> int:
    """Bytes of the model files in a model folder (``llm.formats.model_files``: classifier.json,
    weights, and the tokenizer or the baseline's vocabulary)."""
    directory = Path(directory)
    return sum((directory / f).stat().st_size for f in model_files(directory) if (directory / f).exists())


def stored_parameters(directory: str | Path) -> int:
    """Parameters of a model folder: the elements of the tensors in its model.safetensors (int8
    matrices count once; their per-row scales do not count)."""
    from safetensors import safe_open

    from llm.classifier import INT8_SCALE_SUFFIX

    total = 0
    with safe_open(str(Path(directory) / WEIGHTS_FILE), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            if not key.endswith(INT8_SCALE_SUFFIX):
                total += math.prod(f.get_slice(key).get_shape())
    return total


def candidate_folders(candidates: str | None) -> list[tuple[str, Path]]:
    """(name, folder) of each model folder (one holding classifier.json) directly under
    ``candidates``, sorted by name; none when ``candidates`` is None."""
    if not candidates:
        return []
    return sorted((p.name, p) for p in Path(candidates).iterdir() if (p / CONFIG_FILE).is_file())


class BaselineMismatch(RuntimeError):
    """The saved baseline folder does not reproduce the fitted scikit-learn pipeline."""


# How far the saved baseline's probabilities may be from scikit-learn's: both are float64 over the
# same terms; only the order of a few sums can differ (measured: 0 on the demo's test split).
BASELINE_TOLERANCE = 1e-9  # (probability)


def train_baseline(texts: list[str], labels: list[str], params: Params) -> Any:
    """TF-IDF (word 1..ngram_max-grams, sublinear tf) + L2 logistic regression (liblinear),
    deterministic for given data (liblinear's primal solver draws nothing; seeded anyway)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(
            ngram_range=(1, params.baseline_ngram_max), min_df=params.baseline_min_df, sublinear_tf=True
        ),
        LogisticRegression(C=params.baseline_c, solver="liblinear", max_iter=1000, random_state=0),
    )
    return model.fit(texts, labels)


def save_checked_baseline(model: Any, directory: str | Path, texts: list[str]) -> Any:
    """Save the fitted pipeline ``model`` as a tfidf-logreg folder in ``directory``
    (``llm.baseline.save_baseline``), load it back as the server would and return it; raises
    ``BaselineMismatch`` unless it gives scikit-learn's labels on ``texts`` exactly and its
    probabilities to ``BASELINE_TOLERANCE``."""
    from llm.baseline import load_baseline, save_baseline

    save_baseline(model, directory)
    loaded = load_baseline(directory)
    if texts:
        expected = model.predict_proba(texts)
        got = loaded.predict_proba(texts)
        worst = float(np.abs(got - expected).max())
        labels = loaded.predict(texts)[0]
        same = sum(a == str(b) for a, b in zip(labels, model.predict(texts), strict=True))
        if worst > BASELINE_TOLERANCE or same != len(texts):
            raise BaselineMismatch(
                f"evaluate: the saved baseline labels {same}/{len(texts)} texts as scikit-learn does and its "
                f"probabilities differ by up to {worst:.3g} (tolerance {BASELINE_TOLERANCE:g})"
            )
    return loaded


def baseline_predictor(model: Any) -> Any:
    """``predict(texts) -> (labels, scores)`` of a fitted scikit-learn pipeline (as TextClassifier)."""
    classes = [str(c) for c in model.classes_]

    def predict(texts: list[str]) -> tuple[list[str], list[float]]:
        proba = model.predict_proba(texts)
        index = proba.argmax(axis=1)
        return [classes[i] for i in index], [float(proba[r, i]) for r, i in enumerate(index)]

    return predict


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One Markdown row per model with the ``TABLE_COLUMNS`` (missing values as '-')."""
    lines = ["| " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"]
    lines.append("|" + "|".join("---" for _ in TABLE_COLUMNS) + "|")
    for row in rows:
        row = {**row, "size_mb": row.get("size_bytes", 0) / 1e6}
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(
    pretrained: str,
    tokenized: str,
    finetuned: str,
    task: str,
    output: str,
    params: Params,
    variants: str | None = None,
    sft: str | None = None,
    qa: str | None = None,
) -> dict[str, Any]:
    """Score the pretrained GPT (perplexity) and the classifier (task split); see the module doc.
    With ``sft`` (the sft output folder) and ``qa`` (ingest's qa.jsonl) and ``params.qa.enabled``,
    also the generative table (``components.evaluate.generative``)."""
    import torch

    from components.common.io import read_jsonl
    from llm.classifier import load_classifier
    from llm.formats import dataset_prefix
    from llm.gpt import load_pretrained, megatron_runtime

    started = time.monotonic()
    # Where the baseline folder is saved until the output folder is written (removed after).
    staging = tempfile.TemporaryDirectory(prefix="evaluate-baseline-")
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
        stream = read_stream(dataset_prefix(tokenized, "test"), stream_limit(window, params.max_tokens))
        windows = lm_windows(stream, window, params.max_tokens)
        metrics: dict[str, Any] = lm_perplexity(model, windows, params.batch_size)
        metrics["lm_window"] = window
        del model

        qa_rows: list[dict[str, Any]] | None = None
        if params.qa.enabled and (sft is None) != (qa is None):
            raise ValueError("evaluate: the generative evaluation needs both --sft and --qa")
        if not params.qa.enabled and sft is not None:
            # The files DVC tracks exist either way; an empty table says the evaluation was off.
            qa_rows, generations, qa_info = (
                [],
                [],
                {"enabled": False, "split": params.qa.split, "questions": 0},
            )
        if params.qa.enabled and sft is not None:
            from components.evaluate.generative import evaluate_qa

            qa_windows = windows[: max(1, params.qa.perplexity_tokens // window)]
            qa_rows, generations, qa_info = evaluate_qa(
                qa,
                sft,
                pretrained,
                params.qa,
                (lambda gpt: lm_perplexity(gpt, qa_windows, params.batch_size)["perplexity"])
                if params.qa.perplexity_tokens
                else None,
            )
            qa_info["perplexity_tokens"] = int(qa_windows[:, 1:].size) if params.qa.perplexity_tokens else 0

        classifier = load_classifier(finetuned)
        labels = classifier.labels
        unknown = sorted({r["label"] for r in examples} - set(labels))
        if unknown:
            raise ValueError(f"evaluate: {task} has labels {unknown} the classifier does not know ({labels})")
        texts = [r["text"] for r in examples]
        actual = [r["label"] for r in examples]
        predicted, scores = classifier.predict(texts, params.eval_batch_size)
        rows = []
        predictors: dict[str, Any] = {}
        outputs: dict[str, tuple[list[str], list[float]]] = {}  # predictions per model folder

        def classifier_row(
            name: str, folder: str | Path, model: Any, pred: list[str], conf: list[float]
        ) -> dict:
            predictors[name] = lambda batch: model.predict(batch, params.eval_batch_size)
            outputs[name] = (pred, conf)
            return {
                "model": name,
                "kind": "classifier",
                "variant": model.config.variant or "float",
                **score_row(actual, pred, conf, labels, params.calibration_bins),
                "size_bytes": folder_size(folder),
                "parameters": stored_parameters(folder),
                "tokens_per_review": mean_tokens(model, texts),
            }

        rows.append(classifier_row(FINETUNED, finetuned, classifier, predicted, scores))
        for name, folder in candidate_folders(variants):
            variant = load_classifier(folder)
            if variant.labels != labels:
                raise ValueError(
                    f"evaluate: {folder} has labels {variant.labels}, the fine-tuned model {labels}"
                )
            pred, conf = variant.predict(texts, params.eval_batch_size)
            rows.append(classifier_row(name, folder, variant, pred, conf))

        if params.baseline:
            from llm.baseline import parameters

            train = [r for r in records if r["split"] == "train"]
            fit_start = time.perf_counter()
            fitted = train_baseline([r["text"] for r in train], [r["label"] for r in train], params)
            # Its training cost (select's return on investment): one CPU machine for the fit.
            fit_seconds = time.perf_counter() - fit_start
            # Scored and timed as it is served: the saved folder, loaded back (checked against
            # scikit-learn first); it is copied into the output with the other files below.
            baseline = save_checked_baseline(fitted, staging.name, texts)
            predictors[BASELINE] = lambda batch: baseline.predict(batch, params.eval_batch_size)
            pred, conf = baseline.predict(texts, params.eval_batch_size)
            outputs[BASELINE] = (pred, conf)
            rows.append(
                {
                    "model": BASELINE,
                    "kind": "baseline",
                    "variant": "tfidf-logreg",
                    **score_row(actual, pred, conf, labels, params.calibration_bins),
                    "size_bytes": folder_size(staging.name),
                    "parameters": parameters(baseline.config),
                    "tokens_per_review": mean_tokens(baseline, texts),
                    "fit_seconds": fit_seconds,
                }
            )
        speeds = timing(predictors, texts, params)
        rows = [{**r, **speeds[r["model"]]} for r in rows]
        predictors.clear()  # release the models before writing
        del classifier

    # Ties go to the label listed first, so the baseline does not depend on file order.
    majority = max(labels, key=lambda lab: (train_labels[lab], -labels.index(lab)))
    metrics.update(classification_metrics(actual, predicted, labels, majority))
    metrics["task_split"] = params.task_split
    metrics["ece"] = rows[0]["ece"]
    # Deterministic scores of every row (timings live in models.json only).
    metrics["models"] = {
        r["model"]: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "ece": r["ece"]} for r in rows
    }
    with atomic_output_dir(output) as out:
        write_csv(
            Path(out) / a.CONFUSION,
            ({"actual": a, "predicted": p} for a, p in zip(actual, predicted, strict=True)),
            ["actual", "predicted"],
        )
        write_jsonl(
            Path(out) / a.PREDICTIONS,
            (
                {"id": r["id"], "text": r["text"], "label": r["label"], "prediction": p, "score": round(s, 6)}
                for r, p, s in zip(examples, predicted, scores, strict=True)
            ),
        )
        # Every model folder's predictions, so a later stage can smoke-test whichever is shipped.
        (Path(out) / a.PREDICTIONS_DIR).mkdir()
        for name, (pred, conf) in outputs.items():
            write_jsonl(
                Path(out) / a.PREDICTIONS_DIR / f"{name}.jsonl",
                (
                    {
                        "id": r["id"],
                        "text": r["text"],
                        "label": r["label"],
                        "prediction": p,
                        "score": round(c, 6),
                    }
                    for r, p, c in zip(examples, pred, conf, strict=True)
                ),
            )
        write_json(
            Path(out) / a.MODELS,
            {"task_split": params.task_split, "examples": len(examples), "labels": labels, "models": rows},
        )
        (Path(out) / a.TABLE).write_text(markdown_table(rows), encoding="utf-8")
        if params.baseline:
            shutil.copytree(staging.name, Path(out) / a.BASELINE_DIR)
        else:
            # What DVC tracks exists either way: the reason instead of a model folder.
            write_json(
                Path(out) / a.BASELINE_DIR / a.NOT_SHIPPED,
                {"reason": "no baseline trained (evaluate.baseline is false)"},
            )
        if qa_rows is not None:
            from components.evaluate.generative import qa_metrics, qa_table

            write_json(Path(out) / a.QA_RESULTS, {**qa_info, "models": qa_rows})
            (Path(out) / a.QA_TABLE).write_text(qa_table(qa_rows), encoding="utf-8")
            write_jsonl(Path(out) / a.GENERATIONS, generations)
            if qa_rows:
                metrics["qa"] = qa_metrics(qa_rows, qa_info)
        metrics = write_metrics(out, metrics)
    staging.cleanup()
    log.info("evaluate: models\n%s", markdown_table(rows))
    if qa_rows:
        from components.evaluate.generative import qa_table

        log.info("evaluate: QA (%s split)\n%s", qa_info["split"], qa_table(qa_rows))
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
