"""The key figures of each stage, read from its ``metrics.json``: one line a person reads at a
glance. One place for both views of a run: the end of ``make run`` (``pipelines.run_summary``) and
the HTML run report (``components.report.core``). Stdlib only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get(d: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """``d["a"]["b"]`` for ``"a.b"``; ``default`` when a key is missing."""
    for key in dotted.split("."):
        if not isinstance(d, Mapping) or key not in d:
            return default
        d = d[key]
    return d


def count(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else "?"


def number(x: Any, fmt: str = "{:.3f}") -> str:
    return fmt.format(x) if isinstance(x, int | float) else "?"


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def figures(stage: str, m: Mapping[str, Any], prices: Mapping[str, Any] | None = None) -> str:
    """One line of ``stage``'s key figures from its metrics ``m``. ``prices``: the
    ``monitoring.prices`` section (``train_usd_per_hour`` prices the pretraining hours; without it
    the hours are shown alone)."""
    prices = prices or {}
    if stage == "ingest":
        return (
            f"{count(get(m, 'corpus.documents'))} documents, {count(get(m, 'qa.questions'))} QA questions, "
            f"dataset {str(m.get('dataset_version', '?'))[:8]}"
        )
    if stage == "clean":
        dropped = {k: v for k, v in (m.get("dropped") or {}).items() if isinstance(v, int) and v}
        top = max(dropped.items(), key=lambda kv: kv[1], default=None)
        most = f"most dropped: {top[0]} {top[1]:,}" if top else "none dropped"
        return f"kept {count(m.get('kept'))} of {count(m.get('input'))} documents ({most})"
    if stage == "tokenize":
        return f"{count(get(m, 'tokens.train'))} train tokens, vocabulary {count(m.get('vocab_size'))}"
    if stage == "pretrain":
        hours, price = m.get("accelerator_hours"), prices.get("train_usd_per_hour")
        cost = (
            f" (${hours * price:.4f})"
            if isinstance(hours, int | float) and isinstance(price, int | float)
            else ""
        )
        return (
            f"valid loss {number(m.get('initial_valid_loss'), '{:.2f}')} -> {number(m.get('valid_loss'), '{:.2f}')}, "
            f"MFU {number(m.get('mfu'), '{:.0%}')}, {number(hours, '{:.3f}')} accelerator-h{cost}"
        )
    if stage == "finetune":
        return f"valid macro-F1 {number(m.get('valid_macro_f1'))}, {count(m.get('epochs_run'))} epochs"
    if stage == "sft":
        return (
            f"response loss valid {number(m.get('valid_loss_first'), '{:.2f}')} -> "
            f"{number(m.get('valid_loss_last'), '{:.2f}')}, {count(m.get('steps'))} steps"
        )
    if stage == "compress":
        variants = m.get("variants") or {}
        return "MB, agreement: " + ", ".join(
            f"{name} {number(v.get('size_bytes', 0) / 1e6, '{:.1f}')} {number(v.get('agreement_with_float'), '{:.1%}')}"
            for name, v in variants.items()
        )
    if stage == "evaluate":
        return (
            f"test macro-F1 {number(m.get('macro_f1'))} (TF-IDF baseline {number(get(m, 'models.baseline.macro_f1'))}), "
            f"perplexity {number(m.get('perplexity'), '{:.0f}')}"
        )
    if stage == "select":
        generator = (
            f"generator {m.get('generator')}" if m.get("generator_shipped") else "no generator shipped"
        )
        return f"chose {m.get('chosen', '?')} (macro-F1 {number(m.get('macro_f1'))}); {generator}"
    if stage == "deploy":
        smoke = f"smoke {number(m.get('smoke_agreement'), '{:.0%}')} of {count(m.get('smoke_examples'))}"
        if m.get("generator_shipped"):
            smoke += f", generator {m.get('generator_version')} smoke {'ok' if m.get('generator_smoke_agrees') else 'FAILED'}"
        return smoke
    if stage == "monitor":
        return (
            f"{', '.join(f'{name} {v}' for name, v in drift_verdicts(m))}; alerts: {count(m.get('alerts'))}"
        )
    if stage == "report":
        return f"{count(m.get('stages_recorded'))} of {count(m.get('stages'))} stages with a run record"
    return ""


def drift_verdicts(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(batch, "DRIFT" | "no drift")`` per batch of the monitor's metrics, by name."""
    batches = m.get("batches") or {}
    return [(name, "DRIFT" if b.get("drift_detected") else "no drift") for name, b in sorted(batches.items())]


def verdict(row: Mapping[str, Any], chosen: str | None) -> str:
    """A model-table row's verdict in select's decision: CHOSEN, its violations, or eligible."""
    if row.get("model") == chosen:
        return "CHOSEN"
    if row.get("violations"):
        return "; ".join(row["violations"])
    return "eligible"
