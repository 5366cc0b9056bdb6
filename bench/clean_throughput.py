"""Throughput of the clean stage against datatrove running equivalent steps, on the same input, in
the same run; plus the peak memory of the process tree.

Input: the 3.8k news articles of data/raw/news_articles.csv (``--copies N`` repeats them N times with
a suffix that keeps the copies distinct), as 4 JSONL files so that datatrove's tasks can split them.

Runs (each a fresh process; wall time includes start-up, the figure a user waits for):
- ours, all steps: the clean stage with the demo params (denoise, language, Gopher quality and
  repetition, C4, FineWeb, PII, outliers, exact and MinHash-LSH dedup, reports);
- ours, equivalent steps: Gopher quality and repetition, C4 (the demo's rules) and MinHash-LSH
  dedup only (parsing and Unicode normalization always run);
- datatrove 0.10.1, the same steps: GopherRepetitionFilter, GopherQualityFilter,
  C4QualityFilter(filter_no_terminal_punct=False, as our default), then its 4-stage MinHash dedup
  (signatures, buckets, clusters, filter) with 5-grams and 20 buckets x 6 hashes like ours;
  with 2 tasks/workers (this machine's 2 cores; its faster setting here), ``--datatrove-tasks 1 2``
  adds the single-task run. Our Beam pipeline runs in one process (FnApiRunner).

Prints docs/s, the ratio ours / datatrove (goal >= 1.0, against datatrove's faster configuration),
and peak RSS of each run (sampled every 50 ms over the process tree). ``--memory-docs 200000`` adds
a run of the full stage on that many synthetic news-like documents (sentences of the sample
recombined) and reports its peak memory (goal <= 2 GiB); it takes several minutes.

The datatrove peer lives in its own venv (.cache/bench-venvs/datatrove), created with pinned
versions on first use (about a minute). ``.venv/bin/python bench/clean_throughput.py``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    ROOT,
    clean_command,
    datatrove_python,
    news_documents,
    run_measured,
    sentence_pool,
    synthetic_documents,
    write_jsonl,
)

SHARDS = 4
OFF = {"enabled": False}
EQUIVALENT = {
    "min_chars": 1,
    "min_words": 0,
    "max_chars": 10_000_000,
    "denoise": {
        "fix_mojibake": False,
        "strip_markup": False,
        "boilerplate_min_docs": 0,
        "max_replacement_ratio": 1.0,
    },
    "language": OFF,
    "fineweb": OFF,
    "outliers": OFF,
    "pii": OFF,
    "dedup": {"exact": False},
}

DATATROVE_SCRIPT = textwrap.dedent(
    """
    import sys, time, json
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter
    from datatrove.pipeline.dedup import MinhashDedupSignature, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
    from datatrove.pipeline.dedup.minhash import MinhashConfig

    if __name__ == "__main__":
        src, work, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3])
        cfg = MinhashConfig(n_grams=5, num_buckets=20, hashes_per_bucket=6)
        times = {}
        def run(name, pipeline, n_tasks=tasks):
            t = time.perf_counter()
            LocalPipelineExecutor(pipeline=pipeline, tasks=n_tasks, workers=tasks, logging_dir=f"{work}/logs/{name}").run()
            times[name] = time.perf_counter() - t
        run("filters", [
            JsonlReader(src),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(filter_no_terminal_punct=False),
            JsonlWriter(f"{work}/filtered", compression=None),
        ])
        run("signatures", [JsonlReader(f"{work}/filtered"), MinhashDedupSignature(f"{work}/sigs", config=cfg)])
        run("buckets", [MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)], n_tasks=cfg.num_buckets)
        run("clusters", [MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg)], n_tasks=1)
        run("filter", [
            JsonlReader(f"{work}/filtered"),
            MinhashDedupFilter(f"{work}/remove"),
            JsonlWriter(f"{work}/deduped", compression=None),
        ])
        kept = 0
        import glob
        for path in glob.glob(f"{work}/deduped/*.jsonl"):
            with open(path) as f:
                kept += sum(1 for _ in f)
        print("RESULT " + json.dumps({"times": times, "kept": kept}))
    """
)


def make_input(folder: Path, copies: int) -> int:
    docs = news_documents()
    rows = []
    for c in range(copies):
        for d in docs:
            suffix = f" (Edition {c})" if c else ""
            rows.append({"id": f"{d['id']}#{c}", "text": d["text"] + suffix, "source": "news"})
    for s in range(SHARDS):
        write_jsonl(folder / f"part-{s}.jsonl", rows[s::SHARDS])
    return len(rows)


def report_line(name: str, n: int, seconds: float, peak: int, kept: int | None = None) -> str:
    extra = f", kept {kept}" if kept is not None else ""
    return (
        f"  {name:34s} {seconds:7.1f} s  {n / seconds:8.1f} docs/s  peak RSS {peak / 2**20:6.0f} MiB{extra}"
    )


def run_ours(src: Path, out: Path, clean: dict) -> tuple[float, int, dict]:
    seconds, peak, _ = run_measured(clean_command(src, out, clean), cwd=ROOT)
    with open(out / "report.json", encoding="utf-8") as f:
        return seconds, peak, json.load(f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=1, help="repeat the news sample this many times")
    parser.add_argument(
        "--memory-docs", type=int, default=0, help="also measure the full stage on N synthetic docs"
    )
    parser.add_argument(
        "--datatrove-tasks", type=int, nargs="+", default=[2], help="datatrove task counts to run (e.g. 1 2)"
    )
    parser.add_argument("--skip-datatrove", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="clean-bench-") as tmp:
        tmp = Path(tmp)
        n = make_input(tmp / "input", args.copies)
        print(f"input: {n} news documents in {SHARDS} JSONL files")
        rates = {}
        secs, peak, rep = run_ours(tmp / "input", tmp / "ours_all", {})
        rates["ours_all"] = n / secs
        lines = [report_line("ours, all steps (demo params)", n, secs, peak, rep["kept"])]
        print(lines[-1], flush=True)
        secs, peak, rep = run_ours(tmp / "input", tmp / "ours_eq", EQUIVALENT)
        rates["ours_eq"] = n / secs
        lines.append(report_line("ours, equivalent steps", n, secs, peak, rep["kept"]))
        print(lines[-1], flush=True)

        if not args.skip_datatrove:
            py = datatrove_python()
            script = tmp / "datatrove_run.py"
            script.write_text(DATATROVE_SCRIPT)
            for tasks in args.datatrove_tasks:
                work = tmp / f"dt{tasks}"
                cmd = [str(py), str(script), str(tmp / "input"), str(work), str(tasks)]
                secs, peak, out = run_measured(cmd, env={"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"}, cwd=tmp)
                result = json.loads(out.rsplit("RESULT ", 1)[1].splitlines()[0])
                rates[f"dt{tasks}"] = n / secs
                steps = ", ".join(f"{k} {v:.1f}s" for k, v in result["times"].items())
                lines.append(report_line(f"datatrove, {tasks} task(s)", n, secs, peak, result["kept"]))
                print(lines[-1] + f"\n      ({steps})", flush=True)
            best = max(rates[f"dt{t}"] for t in args.datatrove_tasks)
            print("ratios (ours / datatrove's fastest run; goal >= 1.0):")
            print(f"  all steps        {rates['ours_all'] / best:6.2f}x")
            print(f"  equivalent steps {rates['ours_eq'] / best:6.2f}x")

        if args.memory_docs:
            pool = sentence_pool(news_documents())
            write_jsonl(tmp / "synthetic" / "docs.jsonl", synthetic_documents(args.memory_docs, pool))
            t = time.perf_counter()
            secs, peak, rep = run_ours(tmp / "synthetic", tmp / "ours_mem", {})
            print(
                report_line(
                    f"ours, all steps, {args.memory_docs} synthetic docs",
                    args.memory_docs,
                    secs,
                    peak,
                    rep["kept"],
                )
            )
            verdict = "met" if peak <= 2 * 2**30 else "NOT met"
            print(
                f"  peak memory {peak / 2**30:.2f} GiB (goal <= 2 GiB: {verdict}); {time.perf_counter() - t:.0f}s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
