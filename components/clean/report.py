"""report.json and report.md of the clean stage, counted from what the pipeline wrote.

Counting the written files (not trusting counters) is what makes the accounting check meaningful:
``input == kept + sum(dropped) + sum(rejected)`` or the stage fails with ``AccountingError``.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from components.clean.filters import reason_of_path
from components.clean.readers import UNSUPPORTED
from components.common import artifacts as a
from components.common.io import write_json, write_text
from components.common.seed import stable_hash

COUNT_FILE = ".input_count"
STATS_DIR = "_stats"  # small JSON results written by the pipeline, folded into the report
SPILL_DIR = "_spill"  # document payloads the pipeline passes by pointer (pipeline.Spill)
UNREADABLE = "unreadable"  # the reject reason of the unreadable rest of a shard


class AccountingError(RuntimeError):
    """The output counts do not add up to the input count (a bug, never a data problem)."""


def _fs(work: str | Path):
    import fsspec

    return fsspec.core.url_to_fs(str(work))


def _records(fs, path: str) -> Iterator[dict[str, Any]]:
    with fs.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def _count_lines(fs, path: str) -> int:
    with fs.open(path, "rb") as f:
        return sum(1 for _ in f)


def _read_stat(fs, root: str, name: str, default: Any) -> Any:
    path = f"{root}/{STATS_DIR}/{name}"
    if not fs.exists(path):
        return default
    return json.loads(fs.cat_file(path).decode("utf-8"))


def _dropped_files(fs, root: str) -> dict[str, str]:
    """{reason: path} of the dropped/ files (``dropped/a/b.jsonl`` is reason ``a:b``)."""
    base = f"{root}/dropped/"
    found = fs.find(base) if fs.exists(base) else []
    return {reason_of_path(p[len(base) :]): p for p in sorted(found) if p.endswith(".jsonl")}


def _sample(records: Iterator[dict[str, Any]], k: int, key: str) -> list[dict[str, Any]]:
    """``k`` records chosen by the smallest stable hash of ``key`` (spread out, deterministic)."""
    return heapq.nsmallest(k, records, key=lambda r: (stable_hash(str(r.get(key, ""))), str(r.get(key, ""))))


def make_report(
    work: str | Path,
    params: Any = None,
    counters: dict[str, int] | None = None,
    with_eval: bool = False,
    files_read: int | None = None,
    skipped: Sequence[str] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Count what the pipeline wrote under ``work`` (a folder or URI): ``(report, extra metrics)``;
    raise if the counts do not add up. Removes the pipeline's scratch files (the input count,
    ``_stats/``, ``_spill/``).

    ``report["files"]``: ``read`` (shards given to the pipeline: ``files_read``), ``skipped``
    (``skipped``: files of the input folder clean cannot read, not read and so not in ``input``)
    and ``unreadable`` (shards that stopped being readable: file, line and what was lost, from the
    ``unreadable`` rejected rows; each such rest is one record of ``rejected``)."""
    fs, root = _fs(work)
    n_input = int(fs.cat_file(f"{root}/{COUNT_FILE}").decode())
    fs.rm(f"{root}/{COUNT_FILE}")
    kept_by_source: Counter = Counter()
    pii_kept: Counter = Counter()
    kept = chars = 0
    for part in sorted(fs.glob(f"{root}/documents/part-*.jsonl")):
        for doc in _records(fs, part):
            kept += 1
            chars += len(doc["text"])
            kept_by_source[doc["source"]] += 1
            pii_kept.update(doc.get("meta", {}).get("clean", {}).get("pii", {}))
    dropped = {reason: _count_lines(fs, path) for reason, path in _dropped_files(fs, root).items()}
    rejected_reasons: Counter = Counter()
    unreadable = []
    for r in _records(fs, f"{root}/rejected/rejected.jsonl"):
        rejected_reasons[r["reason"]] += 1
        if r["reason"] == UNREADABLE:
            file, line = r["location"].rsplit(":", 1)
            fields = {k: v for k, v in r.items() if k not in ("location", "reason")}
            unreadable.append({"file": file, "line": int(line), **fields})
    rejected = dict(sorted(rejected_reasons.items()))
    report: dict[str, Any] = {"input": n_input, "kept": kept, "dropped": dropped, "rejected": rejected}
    accounted = kept + sum(dropped.values()) + sum(rejected.values())
    if accounted != n_input:
        raise AccountingError(f"clean: input {n_input} != kept + dropped + rejected = {accounted}: {report}")

    report["files"] = {
        "read": files_read,
        "skipped": [{"file": f, "reason": UNSUPPORTED} for f in sorted(skipped)],
        "unreadable": sorted(unreadable, key=lambda u: (u["file"], u["line"])),
    }
    counters = counters or {}
    pii_types = list(params.pii.types) if params is not None and params.pii.enabled else []
    replaced = {k.split(".", 1)[1]: v for k, v in counters.items() if k.startswith("pii.")}
    report["pii"] = {
        "replaced": {t: replaced.get(t, 0) for t in sorted(set(pii_types) | set(replaced))},
        "in_kept_documents": dict(sorted(pii_kept.items())),
    }
    boilerplate = _read_stat(fs, root, "boilerplate.json", [])
    report["boilerplate"] = {
        "lines_removed": sum(n for _, n in boilerplate),
        "distinct_lines": len(boilerplate),
        "top": [
            {"line": line, "removed": n}
            for (_, line), n in sorted(boilerplate, key=lambda r: (-r[1], r[0][1]))[:20]
        ],
    }
    report["outliers"] = _read_stat(fs, root, "outliers.json", {})
    clusters = _read_stat(fs, root, "clusters.json", {})
    report["dedup"] = {
        "exact_duplicates": dropped.get("duplicate_exact", 0),
        "near_duplicates": dropped.get("duplicate_near", 0),
        **clusters,
    }
    if with_eval:
        conflicts = _read_stat(fs, root, "label_conflicts.json", [])
        report["decontamination"] = {
            "eval_records": counters.get("eval.records", 0),
            "contaminated": dropped.get("contaminated", 0),
        }
        report["label_conflicts"] = {"count": len(conflicts), "examples": conflicts[:20]}
    report["counters"] = counters
    for scratch in (STATS_DIR, SPILL_DIR):
        if fs.exists(f"{root}/{scratch}"):
            fs.rm(f"{root}/{scratch}", recursive=True)

    extra = {
        "kept_fraction": kept / n_input if n_input else 0.0,
        "kept_chars": chars,
        "kept_by_source": dict(sorted(kept_by_source.items())),
    }
    return report, extra


def samples(work: str | Path, k: int) -> dict[str, list[dict[str, Any]]]:
    """Up to ``k`` examples per drop and reject reason (``dropped:<reason>`` / ``rejected:<reason>``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if k <= 0:
        return out
    fs, root = _fs(work)
    for reason, path in _dropped_files(fs, root).items():
        out[f"dropped:{reason}"] = _sample(_records(fs, path), k, "id")
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for r in _records(fs, f"{root}/rejected/rejected.jsonl"):
        by_reason.setdefault(r["reason"], []).append(r)
    for reason in sorted(by_reason):
        out[f"rejected:{reason}"] = _sample(iter(by_reason[reason]), k, "location")
    return out


def _excerpt(text: str, n: int) -> str:
    flat = " ⏎ ".join(line.strip() for line in text.splitlines() if line.strip())
    flat = flat.replace("|", "\\|").replace("`", "'")
    return flat[:n] + ("…" if len(flat) > n else "")


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def markdown(report: dict[str, Any], examples: dict[str, list[dict[str, Any]]], sample_chars: int) -> str:
    """The report for a person: counts, the rule statistics and a few documents per reason."""
    total = report["input"]
    lines = [
        "# clean report",
        "",
        f"Input records: **{total}**; kept **{report['kept']}** ({_pct(report['kept'], total)}), "
        f"dropped {sum(report['dropped'].values())}, rejected {sum(report['rejected'].values())}.",
        "",
    ]
    for title, counts in (("Dropped", report["dropped"]), ("Rejected", report["rejected"])):
        lines += [f"## {title} by reason", ""]
        if counts:
            lines += ["| reason | records | of input |", "|---|---:|---:|"]
            lines += [f"| `{reason}` | {n} | {_pct(n, total)} |" for reason, n in sorted(counts.items())]
        else:
            lines.append("None.")
        lines.append("")
    files = report.get("files", {})
    if files.get("skipped") or files.get("unreadable"):
        lines += ["## Input files not read (whole or in part)", ""]
        if files.get("read") is not None:
            lines += [f"{files['read']} JSONL files read.", ""]
        for row in files.get("skipped", []):
            lines.append(f"- `{row['file']}`: skipped, {row['reason']} (clean reads .jsonl and .jsonl.gz)")
        for row in files.get("unreadable", []):
            lost = (
                f"{row['lines_read']} lines read, {row['bytes_read']} bytes decoded; "
                f"stopped at byte {row['stopped_at_byte']} of {row['file_bytes']} on disk"
            )
            lines.append(
                f"- `{row['file']}`: unreadable from line {row['line']} ({lost}): {_excerpt(row['error'], 200)}; "
                "the rest counts as one rejected record"
            )
        lines.append("")
    pii = report.get("pii", {})
    if pii.get("replaced") or pii.get("in_kept_documents"):
        lines += [
            "## Personal data replaced",
            "",
            "| type | all documents | kept documents |",
            "|---|---:|---:|",
        ]
        kinds = sorted(set(pii.get("replaced", {})) | set(pii.get("in_kept_documents", {})))
        for kind in kinds:
            lines.append(
                f"| {kind} | {pii['replaced'].get(kind, '-')} | {pii['in_kept_documents'].get(kind, 0)} |"
            )
        lines.append("")
    bp = report.get("boilerplate", {})
    if bp.get("top"):
        lines += [
            "## Boilerplate lines removed",
            "",
            f"{bp['lines_removed']} lines removed ({bp['distinct_lines']} distinct). Most frequent:",
            "",
        ]
        lines += [f"- {row['removed']} x `{_excerpt(row['line'], 120)}`" for row in bp["top"][:10]]
        lines.append("")
    out = report.get("outliers", {})
    if out.get("features"):
        state = (
            "applied"
            if out.get("active")
            else f"not applied (fewer than min_docs documents: {out['documents']})"
        )
        lines += [f"## Outlier limits ({state})", "", "| feature | median | MAD | low | high | dropped |"]
        lines.append("|---|---:|---:|---:|---:|---:|")
        for name, lim in out["features"].items():
            n = report["dropped"].get(f"outlier:{name}", 0)
            lines.append(f"| {name} | {lim['median']} | {lim['mad']} | {lim['low']} | {lim['high']} | {n} |")
        lines.append("")
    dd = report.get("dedup", {})
    lines += [
        "## Duplicates",
        "",
        f"Exact: {dd.get('exact_duplicates', 0)} dropped. Near: {dd.get('near_duplicates', 0)} dropped "
        f"in {dd.get('clusters', 0)} clusters of {dd.get('documents', 0)} documents.",
        "",
    ]
    if "decontamination" in report:
        dc = report["decontamination"]
        lines += [
            "## Decontamination and labels",
            "",
            f"{dc['contaminated']} documents shared an n-gram with the {dc['eval_records']} evaluation records.",
            f"Labelled texts with conflicting labels: {report['label_conflicts']['count']}.",
            "",
        ]
        for row in report["label_conflicts"]["examples"][:5]:
            lines.append(
                f"- {', '.join(row['labels'])}: ids {', '.join(row['ids'][:4])}: `{_excerpt(row['text'], 120)}`"
            )
        lines.append("")
    if examples:
        lines += ["## Samples", ""]
        for reason, rows in examples.items():
            lines += [f"### {reason}", ""]
            for r in rows:
                head = f"`{r.get('id', r.get('location', ''))}`"
                for key in ("duplicate_of", "detail", "location"):
                    if key in r and r.get(key) != r.get("id"):
                        head += f" {key}={r[key]}"
                body = r.get("text", r.get("line", r.get("error", "")))
                lines.append(f"- {head}: {_excerpt(str(body), sample_chars)}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_reports(work: str | Path, report: dict[str, Any], params: Any) -> None:
    """report.json and report.md in ``work`` (a folder or URI)."""
    write_json(f"{work}/{a.REPORT_JSON}", report)
    examples = samples(work, params.report.samples_per_reason)
    write_text(f"{work}/{a.REPORT_MD}", markdown(report, examples, params.report.sample_chars))
