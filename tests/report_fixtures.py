"""Stage output folders for the run report's tests (tests/unit/test_report.py, the page test)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from components.common.entry import write_run_record
from components.report.core import DAG

# Who reads whom in this fixture (a part of the real DAG).
READS = {
    "clean": {"data": "ingest"},
    "tokenize": {"cleaned": "clean", "task": "ingest/task.jsonl"},
    "pretrain": {"tokenized": "tokenize"},
    "finetune": {"pretrained": "pretrain", "task": "ingest/task.jsonl"},
    "evaluate": {"finetuned": "finetune", "pretrained": "pretrain"},
    "select": {"evaluation": "evaluate"},
    "monitor": {"reference": "evaluate/predictions.jsonl", "batches": "ingest/batches"},
}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_stage_outputs(root: Path) -> Path:
    """Stage folders under ``root`` with what the report reads: run records of ingest and the
    stages of ``READS`` (the others, deploy among them, ran before run records: none), metrics,
    a pretraining curve, the confusion matrix, select's decision and card, two drift verdicts."""
    for stage in DAG:
        (root / stage).mkdir(parents=True)
        write(root / stage / "metrics.json", "{}")
    write(root / "ingest" / "task.jsonl", "")
    (root / "ingest" / "batches").mkdir()
    write(root / "evaluate" / "predictions.jsonl", "")
    recorded = ["ingest", *READS]
    for stage in recorded:
        arguments = {name: str(root / target) for name, target in READS.get(stage, {}).items()}
        arguments["output"] = str(root / stage)
        write_run_record(stage, arguments, datetime(2026, 12, 2, 10, 0, tzinfo=UTC), 12.5)
    write(root / "pretrain" / "loss.csv", "step,train_loss,valid_loss\n0,9.0,9.1\n100,7.0,7.3\n200,6.0,6.4\n")
    write(
        root / "evaluate" / "metrics.json",
        json.dumps(
            {
                "macro_f1": 0.7,
                "labels": ["negative", "positive"],
                "examples": 10,
                "confusion": {
                    "negative": {"negative": 4, "positive": 1},
                    "positive": {"negative": 2, "positive": 3},
                },
            }
        ),
    )
    models = [
        {
            "model": "finetuned",
            "variant": "float",
            "macro_f1": 0.70,
            "latency_p95_ms": 40.0,
            "size_bytes": 21e6,
        },
        {
            "model": "baseline",
            "variant": "tfidf-logreg",
            "macro_f1": 0.76,
            "latency_p95_ms": 1.0,
            "size_bytes": 1e6,
        },
        {
            "model": "int8",
            "variant": "int8",
            "macro_f1": 0.69,
            "latency_p95_ms": 31.0,
            "size_bytes": 6e6,
            "violations": ["p95 latency 31.0 ms > 30 ms"],
        },
    ]
    write(
        root / "select" / "decision.json",
        json.dumps(
            {"chosen": "baseline", "metric": "macro_f1", "models": models, "gate": "nothing promoted"}
        ),
    )
    write(root / "select" / "MODEL_CARD.md", "# Model card: baseline\n\nA <TF-IDF> baseline.\n")
    write(
        root / "monitor" / "metrics.json",
        json.dumps(
            {
                "alerts": 1,
                "batches": {
                    "plots": {"drift_detected": True, "drift_share": 1.0, "drifted_columns": 3, "columns": 3},
                    "reviews": {
                        "drift_detected": False,
                        "drift_share": 0.0,
                        "drifted_columns": 0,
                        "columns": 3,
                    },
                },
            }
        ),
    )
    for batch in ("plots", "reviews"):
        write(root / "monitor" / batch / "report.html", "<html></html>")
    return root
