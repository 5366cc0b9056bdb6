"""The names of every file inside every stage's output folder: one place for producers, consumers,
the Kubeflow components and dvc.yaml (a test checks dvc.yaml's outs and deps against this).

A stage's output is one folder: ``outputs/<stage>/`` under DVC, the stage's output artifact under
Kubeflow. ``path(folder, name)`` joins a name onto either a path or a KFP artifact (its ``.path``).
The floor's own formats (a model folder, a tokenized corpus) are named in ``llm.formats``.
"""

from __future__ import annotations

import os
from typing import Any

from llm.formats import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    GENERATOR_FILE,
    GPT_SHAPE_FILE,
    SPLITS,
    TASK_SOURCE,
    TASK_SPLITS,
    TEXT_SOURCE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    dataset_files,
)

METRICS = "metrics.json"  # every stage writes one (DVC metrics, KFP Metrics artifact)

# ingest
DATASET = "dataset.json"  # the raw data's content hashes (lineage)
CORPUS = "corpus.jsonl"  # pretraining documents {id, text, source}
TASK = "task.jsonl"  # labelled task examples {id, text, label, split}
QA = "qa.jsonl"  # cloze QA rows {id, article_id, split, prompt, response, question, answer, passage, candidates}
FEEDBACK = "feedback.jsonl"  # the data flywheel's audit: every harvested feedback row with its outcome
BATCHES = "batches"  # monitoring batches, one JSONL file per batch
MONITOR_BATCHES: tuple[str, ...] = ("reviews", "plots")  # held-out reviews (no drift), plot summaries (drift)

# clean
DOCUMENTS = "documents"  # kept documents, JSONL parts
DROPPED = "dropped"  # dropped documents, one JSONL per reason
REJECTED = "rejected"  # malformed records, with the reason
REPORT_JSON = "report.json"
REPORT_MD = "report.md"

# tokenize: tokenizer.json + megatron indexed datasets
TOKENIZED_DATASETS: tuple[str, ...] = tuple(
    name
    for source, splits in ((TEXT_SOURCE, SPLITS), (TASK_SOURCE, TASK_SPLITS))
    for split in splits
    for name in dataset_files(split, source)
)

# pretrain
GPT_SHAPE = GPT_SHAPE_FILE  # the GPTShape of the checkpoint
CHECKPOINT = CHECKPOINT_DIR  # megatron dist_checkpointing folder
LOSS = "loss.csv"  # DVC plot: train/valid loss per evaluation
STEPS = "steps.csv"  # DVC plot: loss, grad norm and lr per optimizer step

# finetune (a model folder, plus its training curve)
HISTORY = "history.csv"  # DVC plot: loss and macro-F1 per epoch

# sft: a generator folder (pretrain's model.json + checkpoint/, tokenizer.json, generator.json),
# its loss curves (LOSS, STEPS, as pretrain's) and the pairs it set aside
GENERATOR = GENERATOR_FILE  # decoding settings of the generator folder (llm.generator)
SFT_REJECTED = "rejected.jsonl"  # malformed prompt/response rows {line, reason, text}

# compress: one model folder per variant
VARIANTS: tuple[str, ...] = ("int8", "pruned", "distilled")

# evaluate
PREDICTIONS = "predictions.jsonl"  # the fine-tuned model's test predictions (monitor's reference)
PREDICTIONS_DIR = "predictions"  # every scored model's test predictions, <model>.jsonl
MODELS = "models.json"  # the model table (quality, latency, size) for the gate
TABLE = "table.md"
CONFUSION = "confusion.csv"  # DVC plot: confusion matrix
QA_TABLE = "qa_table.md"  # the generative (QA) table: baseline, pretrained, sft, sft-int8
QA_RESULTS = "qa.json"  # the same rows as JSON, for the generative gate
GENERATIONS = "generations.jsonl"  # the sft model's test generations (the monitor's reference, C3)
BASELINE_DIR = "baseline"  # the TF-IDF + logistic regression baseline, a tfidf-logreg model folder

# report
REPORT_HTML = "report.html"  # the run report (components.report); also each monitor batch's Evidently page

# select
MODEL_DIR = "model"  # the chosen model folder (select), the released one (deploy)
DECISION_JSON = "decision.json"
DECISION_MD = "decision.md"
MODEL_CARD = "MODEL_CARD.md"
GENERATOR_DIR = "generator"  # the chosen generator folder (select), the released one (deploy)
NOT_SHIPPED = "NOT_SHIPPED.json"  # in generator/ instead of a generator when none is shipped {reason}

# deploy
RELEASE = "release.json"  # version, file hashes, dataset version, smoke test
INFERENCE_SERVICE = "inference_service.yaml"  # the release as a KServe InferenceService
ROI = "roi.json"  # the release's return on investment (select's decision.json roi block), for the monitor

# Every stage's output folder: the names DVC tracks (outs), its metrics, and its plots files (CSV
# data of dvc.yaml's top-level plots; dvc.yaml lists them after the outs, as outs, cache: false).
OUTPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "ingest": {"outs": (DATASET, CORPUS, TASK, QA, FEEDBACK, BATCHES)},
    "clean": {"outs": (DOCUMENTS, DROPPED, REJECTED, REPORT_JSON, REPORT_MD)},
    "tokenize": {"outs": (TOKENIZER_FILE, *TOKENIZED_DATASETS)},
    "pretrain": {"outs": (GPT_SHAPE, CHECKPOINT), "plots": (LOSS, STEPS)},
    "finetune": {"outs": (WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE), "plots": (HISTORY,)},
    "sft": {"outs": (GPT_SHAPE, CHECKPOINT, TOKENIZER_FILE, GENERATOR, SFT_REJECTED), "plots": (LOSS, STEPS)},
    "compress": {"outs": VARIANTS},
    "evaluate": {
        "outs": (
            PREDICTIONS,
            PREDICTIONS_DIR,
            MODELS,
            TABLE,
            QA_RESULTS,
            QA_TABLE,
            GENERATIONS,
            BASELINE_DIR,
        ),
        "plots": (CONFUSION,),
    },
    "select": {
        "outs": (MODEL_DIR, DECISION_JSON, DECISION_MD, MODEL_CARD, PREDICTIONS, GENERATOR_DIR, GENERATIONS)
    },
    "deploy": {"outs": (MODEL_DIR, RELEASE, INFERENCE_SERVICE, GENERATOR_DIR, ROI)},
    "monitor": {"outs": MONITOR_BATCHES},
    "report": {"outs": (REPORT_HTML,)},
}


def path(folder: str | os.PathLike | Any, *names: str) -> str:
    """``folder/name...``: ``folder`` is a path, a URI, or a KFP artifact (its ``.path``)."""
    base = getattr(folder, "path", folder)
    return os.path.join(str(base), *names)


def files_of(stage: str) -> tuple[str, ...]:
    """Every name inside ``stage``'s output folder: outs, plots and metrics.json."""
    spec = OUTPUTS[stage]
    return (*spec["outs"], *spec.get("plots", ()), METRICS)
