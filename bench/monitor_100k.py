"""The continuous monitor's time on 100k logged predictions (goal: at most 30 s on 2 cores).

    .venv/bin/python bench/monitor_100k.py [--rows 100000]

1. Writes a prediction log of ``--rows`` predictions in one hour (review texts from the embedded
   sample, cycled; a lexicon rule as the predictions; gamma-distributed latencies), 10% of them
   labelled, plus the hour before at a lower rate (for latency drift), through the server's own
   ``PredictionLog`` writer, and a reference of 1,300 reviews (evaluate's format).
2. Peer: reading the window alone (``monitoring.window``: partition pruning + Parquet scan with
   the time filter + label join), the floor any monitor pays.
3. ``monitor_window`` with the ``monitor`` defaults, twice: cold (first call in the process: it
   loads the NLTK data and Evidently) and warm (what every later run of ``--interval`` costs).
   Counts, latency and cost use all rows; the drift tests use the seeded ``max_rows`` sample.

Prints each figure and the ratios; needs no model (the monitor reads only the log).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REVIEWS = ROOT / "data" / "raw" / "rotten_tomatoes.csv.bz2"
POSITIVE = {
    "good",
    "great",
    "best",
    "fun",
    "funny",
    "love",
    "beautiful",
    "moving",
    "fine",
    "wonderful",
    "smart",
}
END = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def texts() -> list[str]:
    import pandas as pd

    df = pd.read_csv(REVIEWS, usecols=["category", "text"]).dropna().sample(frac=1.0, random_state=0)
    return df.loc[df["category"] != "plot", "text"].tolist()


def predict(text: str) -> tuple[str, float]:
    return ("positive", 0.82) if set(text.lower().split()) & POSITIVE else ("negative", 0.64)


def write_inputs(root: Path, reviews: list[str], rows: int) -> float:
    """Reference + log; returns the seconds the log writer took."""
    from components.common.io import write_jsonl
    from serving.prediction_log import PredictionLog

    write_jsonl(
        root / "predictions.jsonl",
        (
            {
                "id": f"t{i}",
                "text": t,
                "label": predict(t)[0] if i % 5 else "negative",
                "prediction": predict(t)[0],
                "score": predict(t)[1],
            }
            for i, t in enumerate(reviews[:1300])
        ),
    )
    current = reviews[1300:]
    rng = random.Random(0)
    log = PredictionLog(str(root / "log"), flush_rows=20_000, background=False)
    started = time.perf_counter()
    for hour, n, scale in ((1, rows // 4, 8.0), (0, rows, 10.0)):  # the hour before, then the judged hour
        start = END - timedelta(hours=hour + 1)
        step = 3600.0 / n
        batch = []
        for i in range(n):
            text = current[i % len(current)]
            label, score = predict(text)
            batch.append(
                {
                    "request_id": f"h{hour}-{i}",
                    "item": 0,
                    "ts": start + timedelta(seconds=i * step),
                    "text": text,
                    "prediction": label,
                    "score": score,
                    "latency_ms": rng.gammavariate(2.0, scale),
                    "compute_ms": rng.gammavariate(2.0, 2.0),
                    "tokens": max(2, int(len(text.split()) * 1.3)),
                    "model_version": "bench0000000",
                }
            )
            if len(batch) == 20_000:
                log.predictions.append(batch)
                batch = []
        log.predictions.append(batch)
    log.labels.append(
        {
            "request_id": f"h0-{i}",
            "item": 0,
            "ts": END + timedelta(minutes=5),
            "label": predict(current[i % len(current)])[0],
        }
        for i in range(0, rows, 10)
    )
    log.close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="predictions in the judged hour")
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")

    from llm.drift import DriftParams
    from monitoring.loop import monitor_window
    from monitoring.settings import Settings
    from monitoring.window import read_window_with_labels, window_bounds

    drift_params, settings = DriftParams(), Settings()
    print(
        f"bench: {args.rows} predictions in the window ; {os.cpu_count()} cores ; load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="monitor-100k-") as tmp:
        root = Path(tmp)
        write_s = write_inputs(root, texts(), args.rows)
        total = args.rows + args.rows // 4 + args.rows // 10
        print(
            f"log    written: {total} rows in {write_s:.1f} s ({total / write_s:,.0f} rows/s, PredictionLog)"
        )

        started = time.perf_counter()
        read = read_window_with_labels(
            str(root / "log"), *window_bounds(END, settings.window_minutes), now=END + timedelta(hours=1)
        )
        read_s = time.perf_counter() - started
        print(
            f"peer   read the window only: {len(read.frame)} rows, {int(read.frame['label'].notna().sum())} labelled, {read_s:.2f} s"
        )

        timings = []
        for name in ("cold", "warm"):
            started = time.perf_counter()
            summary = monitor_window(
                str(root / "log"),
                root / "predictions.jsonl",
                root / f"out-{name}",
                drift_params,
                settings,
                END,
                workspace=root / "workspace",
                now=END + timedelta(hours=1),
            )
            seconds = time.perf_counter() - started
            timings.append(seconds)
            version = summary["versions"]["bench0000000"]
            print(
                f"monitor {name}: {seconds:.1f} s for {summary['rows']} rows "
                f"(drift sample {version['drift']['rows']}, {version['quality']['labelled']} labelled; "
                f"text drift {version['drift']['drift_detected']}, latency drift {version['latency']['drift']['drift_detected']}, "
                f"alerts {summary['alert_kinds']})"
            )
    cold, warm = timings
    print(f"ratio  monitor warm / read only: {warm / read_s:.1f}")
    print(
        f"goal   <= 30 s on 2 cores: cold {cold:.1f} s {'OK' if cold <= 30 else 'OVER'}, warm {warm:.1f} s {'OK' if warm <= 30 else 'OVER'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
