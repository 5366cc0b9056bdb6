"""select's return on investment: what a model version cost to train, what it costs to serve, and
what it bought in macro-F1 against the version promoted before and against the TF-IDF baseline.

Pure functions of recorded figures and prices, so each number can be checked by hand:

- training: the accelerator-hours the stages recorded in their metrics.json (pretrain and finetune
  for a GPT classifier, plus compress for a compress variant if it records them; the baseline's
  ``fit_seconds`` from evaluate's row, on one CPU machine), priced per accelerator-hour by
  ``llm.costs.training_price`` at the pretrain run's start (its ``run.json``; unknown = the
  on-peak price, never the cheaper guess). The stages record time, never dollars: the prices are
  ``monitoring.prices`` (``Costs``). A required stage without hours makes the total None, with
  the reason (a total over part of training is never the total); a compress variant's total
  without compress's hours is pretrain + finetune and says that compress is not included.
- serving: *estimated from evaluate's measurements* (CPU, a shared machine: noisy): a request of
  one review at the single-review p50 latency, and reviews in batches at the measured throughput,
  priced at ``serve_usd_per_hour``; per 1,000 requests and per 1,000,000 tokens (evaluate's
  ``tokens_per_review``, the tokens the server counts). The live figures per window come from the
  continuous monitor (``monitoring.cost``).
- quality: macro-F1 against the promotion record (``models/promoted.json``) and the baseline row,
  in points (1 point = 0.01 macro-F1).
- USD per macro-F1 point gained: the version's training USD over its gain on the previous version;
  on the baseline, the training USD beyond the baseline's own over the gain on it. None, with the
  reason, when a figure is unknown or there is no gain.

Keys with wall-clock figures sit under ``training_cost``, ``serving_cost`` and
``usd_per_macro_f1_point`` (what the parity test leaves out); ``quality`` is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from llm.costs import training_price

SECONDS_PER_HOUR = 3600.0
POINTS = 100.0  # macro-F1 points per unit of macro-F1
ESTIMATED = "estimated from evaluate's measurements (CPU, noisy); the live figures come from the monitor"
BASELINE_FIT = "baseline fit"  # the baseline's one training step (evaluate fits it)
NO_PRICES = "no prices given (monitoring.prices)"


def number(value: Any) -> float | None:
    """A JSON number as float; None for anything else (bool included)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_started(record: Mapping[str, Any] | None) -> datetime | None:
    """``started_at`` of a stage's run.json as a datetime, None when absent or unreadable."""
    try:
        return datetime.fromisoformat(str((record or {})["started_at"]))
    except (KeyError, TypeError, ValueError):
        return None


def training_stages(row: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(required, optional)`` training stages of a model-table row: the baseline's fit; the
    fine-tuned model's pretrain and finetune; a compress variant's the same, compress optional."""
    if row.get("kind") == "baseline":
        return (BASELINE_FIT,), ()
    if row.get("model") == "finetuned":
        return ("pretrain", "finetune"), ()
    return ("pretrain", "finetune"), ("compress",)


def stage_time(stage: str, row: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any] | None]) -> dict:
    """``{seconds, accelerator_hours}`` one training stage recorded, or ``{reason}`` why not."""
    if stage == BASELINE_FIT:
        seconds = number(row.get("fit_seconds"))
        if seconds is None:
            return {"reason": "evaluate recorded no fit_seconds for the baseline"}
        return {"seconds": seconds, "accelerator_hours": seconds / SECONDS_PER_HOUR}  # one CPU machine
    m = metrics.get(stage)
    if m is None:
        return {"reason": f"no {stage} metrics.json"}
    hours = number(m.get("accelerator_hours"))
    if hours is None:
        return {"reason": f"{stage}'s metrics.json has no accelerator_hours"}
    return {"seconds": number(m.get("seconds")), "accelerator_hours": hours}


def training_cost(
    row: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, Any] | None],
    started: datetime | None,
    costs: Any | None,
) -> dict[str, Any]:
    """The training figures of ``row`` (see the module doc). ``metrics``: ``{stage: metrics.json}``
    (None = absent); ``started``: the pretrain run's start; ``costs``: ``.prices`` and
    ``.training_window`` (None = no prices: hours only)."""
    required, optional = training_stages(row)
    stages = {s: stage_time(s, row, metrics) for s in (*required, *optional)}
    missing = [s for s in required if "reason" in stages[s]]
    included = [s for s in (*required, *optional) if "reason" not in stages[s]]
    not_included = {s: stages[s]["reason"] for s in optional if "reason" in stages[s]}
    hours = None if missing else sum(stages[s]["accelerator_hours"] for s in included)
    price, period = (None, None)
    if costs is not None:
        price, period = training_price(started, costs.prices, costs.training_window)
    for s in included:
        stages[s]["usd"] = None if price is None else stages[s]["accelerator_hours"] * price
    if missing:
        note = "unknown: " + "; ".join(stages[s]["reason"] for s in missing)
    else:
        note = " + ".join(included) + "".join(
            f" ({s} not included: {why})" for s, why in not_included.items()
        )
    if costs is None:
        note += f"; {NO_PRICES}"
    return {
        "stages": stages,
        "included": included,
        "not_included": not_included,
        "missing": missing,
        "accelerator_hours": hours,
        "usd": None if hours is None or price is None else hours * price,
        "usd_per_hour": price,
        "period": period,
        "priced_at": started.isoformat() if started is not None else None,
        "note": note,
    }


def serving_cost(row: Mapping[str, Any], costs: Any | None) -> dict[str, Any]:
    """Serving USD per 1k requests and per 1M tokens of ``row``, estimated from evaluate's
    single-review p50 latency (a request of one review, unbatched) and batch throughput (reviews
    in full batches), at ``serve_usd_per_hour``; None where a figure or the price is missing."""
    price = None if costs is None else float(costs.prices.serve_usd_per_hour)
    p50 = number(row.get("latency_p50_ms"))
    per_s = number(row.get("throughput_per_s"))
    tokens = number(row.get("tokens_per_review"))
    single_s = p50 / 1000.0 if p50 is not None else None  # model seconds per one-review request
    batched_s = 1.0 / per_s if per_s else None  # model seconds per review in a batch

    def usd(seconds: float | None, per: float) -> float | None:
        if seconds is None or price is None:
            return None
        return seconds / SECONDS_PER_HOUR * price * per

    return {
        "basis": ESTIMATED,
        "usd_per_hour": price,
        "tokens_per_review": tokens,
        "usd_per_1k_requests": usd(single_s, 1_000),
        "usd_per_1k_requests_batched": usd(batched_s, 1_000),
        "usd_per_1m_tokens": usd(single_s, 1e6 / tokens) if tokens else None,
        "usd_per_1m_tokens_batched": usd(batched_s, 1e6 / tokens) if tokens else None,
        "note": ("" if tokens else "evaluate recorded no tokens_per_review: no per-token figure; ")
        + ("" if price is not None else NO_PRICES),
    }


def points(now: float, before: float) -> float:
    """The macro-F1 difference in points (0.01 = 1 point), rounded to 1e-9 (no float dust)."""
    return round((now - before) * POINTS, 9)


def quality(
    row: Mapping[str, Any], previous: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None
) -> dict:
    """Macro-F1 of ``row`` against the promotion record ``previous`` and the ``baseline`` row."""
    score = float(row["macro_f1"])
    before = number(((previous or {}).get("scores") or {}).get("macro_f1"))
    out: dict[str, Any] = {"macro_f1": score, "previous": None, "baseline": None}
    if previous is None:
        out["previous_reason"] = "no version promoted before"
    elif before is None:
        out["previous_reason"] = "the promotion record has no macro_f1"
    else:
        out["previous"] = {
            "model": previous.get("model"),
            "variant": previous.get("variant"),
            "promoted_at": previous.get("promoted_at"),
            "macro_f1": before,
            "delta_points": points(score, before),
        }
    if baseline is None:
        out["baseline_reason"] = "evaluate scored no baseline"
    elif baseline.get("model") == row.get("model"):
        out["baseline_reason"] = "this is the baseline"
    else:
        out["baseline"] = {
            "model": baseline.get("model"),
            "macro_f1": float(baseline["macro_f1"]),
            "delta_points": points(score, float(baseline["macro_f1"])),
        }
    return out


def usd_per_point(usd: float | None, gain: float | None, usd_why: str) -> tuple[float | None, str | None]:
    """``(usd / gain, None)``, or ``(None, reason)`` when ``usd`` is unknown or there is no gain."""
    if gain is None:
        return None, "no comparison"
    if gain <= 0:
        return None, f"no gain ({gain:+.2f} points)"
    if usd is None:
        return None, usd_why
    return usd / gain, None


def return_on_investment(
    row: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Any] | None,
    metrics: Mapping[str, Mapping[str, Any] | None],
    started: datetime | None,
    costs: Any | None,
) -> dict[str, Any]:
    """The ``roi`` block of one model-table row: ``{model, variant, training_cost, serving_cost,
    quality, usd_per_macro_f1_point}`` (see the module doc)."""
    baseline = next((r for r in rows if r.get("kind") == "baseline"), None)
    training = training_cost(row, metrics, started, costs)
    judged = quality(row, previous, baseline)
    unknown = f"training cost {training['note']}"
    vs_prev, why_prev = usd_per_point(
        training["usd"], (judged["previous"] or {}).get("delta_points"), unknown
    )
    if judged["previous"] is None:
        why_prev = judged["previous_reason"]
    base_usd, why_base = None, judged.get("baseline_reason")
    if judged["baseline"] is not None:
        base_training = training_cost(baseline, metrics, started, costs)
        extra = (
            None
            if training["usd"] is None or base_training["usd"] is None
            else training["usd"] - base_training["usd"]
        )
        base_usd, why_base = usd_per_point(
            extra,
            judged["baseline"]["delta_points"],
            unknown if training["usd"] is None else f"the baseline's training cost {base_training['note']}",
        )
    return {
        "model": row.get("model"),
        "variant": row.get("variant", "float"),
        "training_cost": training,
        "serving_cost": serving_cost(row, costs),
        "quality": judged,
        "usd_per_macro_f1_point": {
            "vs_previous": vs_prev,
            "vs_previous_reason": why_prev,
            "vs_baseline": base_usd,
            "vs_baseline_reason": why_base,
            "basis": "training USD / macro-F1 points gained; on the baseline, the training USD beyond the baseline's own",
        },
    }


def usd(value: Any) -> str:
    """``$0.00123`` (4 significant digits: the demo's costs are fractions of a cent); ``-`` for None."""
    return f"${value:.4g}" if isinstance(value, int | float) else "-"


def signed(value: Any) -> str:
    return f"{value:+.2f}" if isinstance(value, int | float) else "-"


def markdown(roi: Mapping[str, Any]) -> str:
    """The "Return on investment" section of the model card and decision.md: a cost table and a
    quality table. Column headers that name a wall-clock figure say so (hours, USD, cost)."""
    t, s, q, p = roi["training_cost"], roi["serving_cost"], roi["quality"], roi["usd_per_macro_f1_point"]
    price = (
        f"{t['period']} at ${t['usd_per_hour']:g}/h, priced at the pretrain run's start ({t['priced_at'] or 'unknown: on-peak'})"
        if t["usd_per_hour"] is not None
        else NO_PRICES
    )
    hours = t["accelerator_hours"]
    rate = f"${s['usd_per_hour']:g}/h" if s["usd_per_hour"] is not None else NO_PRICES
    tokens = f"{s['tokens_per_review']:.1f} tokens per review" if s["tokens_per_review"] else "no token count"
    lines = [
        "## Return on investment",
        "",
        "| cost | accelerator-hours | USD | cost basis |",
        "|---|---|---|---|",
        f"| training ({t['note']}) | {f'{hours:.4g}' if hours is not None else '-'} | {usd(t['usd'])} | {price} |",
        f"| serving per 1k requests (one review each) | | {usd(s['usd_per_1k_requests'])} | p50 latency at {rate} |",
        f"| serving per 1k reviews in batches | | {usd(s['usd_per_1k_requests_batched'])} | throughput at {rate} |",
        f"| serving per 1M tokens (one review each) | | {usd(s['usd_per_1m_tokens'])} | p50 latency, {tokens} |",
        f"| serving per 1M tokens in batches | | {usd(s['usd_per_1m_tokens_batched'])} | throughput, {tokens} |",
        "",
        f"Serving figures are {ESTIMATED}.",
        "",
        "| compared with | model | macro-F1 | Δ macro-F1 (points) | USD per point gained |",
        "|---|---|---|---|---|",
    ]
    for name, key in (("previous version", "previous"), ("baseline", "baseline")):
        other = q[key]
        per = p[f"vs_{key}"]
        if other is None:
            lines.append(f"| {name} | - | - | - | - ({q[f'{key}_reason']}) |")
            continue
        label = str(other["model"]) + (f" ({other['promoted_at']})" if other.get("promoted_at") else "")
        lines.append(
            f"| {name} | {label} | {other['macro_f1']:.4f} | {signed(other['delta_points'])} | "
            + (usd(per) if per is not None else f"- ({p[f'vs_{key}_reason']})")
            + " |"
        )
    return "\n".join(lines) + "\n"


def candidates_markdown(rois: Sequence[Mapping[str, Any]]) -> str:
    """decision.md's per-candidate table of the same figures."""
    lines = [
        "| model | training accelerator-hours | training USD | serving USD / 1k requests | serving USD / 1M tokens "
        "| Δ macro-F1 vs previous (points) | Δ macro-F1 vs baseline (points) | USD per point vs previous "
        "| USD per point vs baseline |",
        "|" + "---|" * 9,
    ]
    for r in rois:
        t, s, q, p = r["training_cost"], r["serving_cost"], r["quality"], r["usd_per_macro_f1_point"]
        hours = t["accelerator_hours"]
        lines.append(
            f"| {r['model']} | {f'{hours:.4g}' if hours is not None else '-'} | {usd(t['usd'])} "
            f"| {usd(s['usd_per_1k_requests'])} | {usd(s['usd_per_1m_tokens'])} "
            f"| {signed((q['previous'] or {}).get('delta_points'))} | {signed((q['baseline'] or {}).get('delta_points'))} "
            f"| {usd(p['vs_previous'])} | {usd(p['vs_baseline'])} |"
        )
    return "\n".join(lines) + "\n"


def headline(roi: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of the chosen model's roi in select's metrics.json (None = unknown)."""
    q = roi["quality"]
    return {
        "training_accelerator_hours": roi["training_cost"]["accelerator_hours"],
        "training_usd": roi["training_cost"]["usd"],
        "serving_usd_per_1k_requests": roi["serving_cost"]["usd_per_1k_requests"],
        "serving_usd_per_1m_tokens": roi["serving_cost"]["usd_per_1m_tokens"],
        "macro_f1_points_vs_previous": (q["previous"] or {}).get("delta_points"),
        "macro_f1_points_vs_baseline": (q["baseline"] or {}).get("delta_points"),
        "usd_per_macro_f1_point_vs_previous": roi["usd_per_macro_f1_point"]["vs_previous"],
        "usd_per_macro_f1_point_vs_baseline": roi["usd_per_macro_f1_point"]["vs_baseline"],
    }
