"""select, the generative part: which generator (if any) the release ships, from evaluate's qa.json.

The rules (``select.generative`` params):

1. the shippable rows are ``sft`` (the fine-tuned float model) and ``sft-int8`` (the same
   checkpoint run with dynamic int8 linear layers); ``pretrained`` and the ``frequent_candidate``
   baseline are yardsticks;
2. a row is eligible when its mean decoding step is <= ``max_ms_per_token`` (0 = no limit) and its
   ``objective`` (test F1 or exact match) beats the baseline's by more than
   ``min_gain_over_baseline``: a generator no better than counting entity mentions is not shipped;
3. among eligible rows within ``tolerance`` of the best score, the fastest (ms per token) is chosen,
   so int8 ships when it is as good and faster, as the classifier gate prefers the smaller model;
4. no eligible row: no generator is shipped and the reasons are recorded (``shipped: false``); the
   classifier release goes on, unless ``required`` is set, which refuses the whole selection
   (``NoGenerator``: the CLI exits 1 with the reasons).

``generator_folder`` writes the chosen one as a generator folder: the sft folder's model.json,
checkpoint/ and tokenizer.json, and a generator.json whose ``quantization`` says how it is served.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from components.common import artifacts as a
from components.common.entry import StageRefused
from components.select.params import GenerativeParams

BASELINE = "frequent_candidate"
SHIPPABLE = ("sft", "sft-int8")


class NoGenerator(StageRefused):
    """``select.generative.required`` and no generator beats the baseline under the constraints."""


def read_qa(evaluation: str | Path) -> dict[str, Any] | None:
    """evaluate's qa.json, or None when it wrote none (no --sft/--qa, or evaluate.qa disabled)."""
    path = Path(evaluation) / a.QA_RESULTS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def generator_violations(row: dict[str, Any], baseline: float | None, params: GenerativeParams) -> list[str]:
    """Why ``row`` may not be shipped as the generator (empty = eligible)."""
    reasons = []
    objective = params.objective
    if row["model"] not in SHIPPABLE:
        reasons.append("a yardstick, not a shipped generator")
        return reasons
    if params.max_ms_per_token and row["ms_per_token"] > params.max_ms_per_token:
        reasons.append(f"{row['ms_per_token']:.1f} ms per token > {params.max_ms_per_token:g} ms")
    if baseline is not None and not row[objective] > baseline + params.min_gain_over_baseline:
        reasons.append(
            f"{objective} {row[objective]:.4f} does not beat the frequent-candidate baseline "
            f"{baseline:.4f} by more than {params.min_gain_over_baseline:g}"
        )
    return reasons


def choose_generator(qa: dict[str, Any], params: GenerativeParams) -> dict[str, Any]:
    """The generator decision (see the module doc): ``{shipped, chosen, quantization, objective,
    score, baseline, reason, models: [row + violations]}``."""
    rows = qa["models"]
    objective = params.objective
    base = next((r for r in rows if r["model"] == BASELINE), None)
    baseline = base[objective] if base else None
    judged = [{**r, "violations": generator_violations(r, baseline, params)} for r in rows]
    eligible = [r for r in judged if not r["violations"]]
    decision: dict[str, Any] = {
        "objective": objective,
        "baseline": baseline,
        "min_gain_over_baseline": params.min_gain_over_baseline,
        "max_ms_per_token": params.max_ms_per_token,
        "tolerance": params.tolerance,
        "split": qa.get("split"),
        "questions": qa.get("questions"),
        "models": judged,
    }
    if not eligible:
        why = "; ".join(
            f"{r['model']}: {', '.join(r['violations'])}" for r in judged if r["model"] in SHIPPABLE
        )
        return {
            **decision,
            "shipped": False,
            "chosen": None,
            "quantization": None,
            "score": None,
            "reason": f"no generator shipped ({why or 'no sft rows in qa.json: evaluate.qa disabled?'})",
        }
    best = max(r[objective] for r in eligible)
    close = [r for r in eligible if r[objective] >= best - params.tolerance]
    choice = min(close, key=lambda r: (r["ms_per_token"], r["model"]))
    reason = f"{objective} {choice[objective]:.4f} beats the baseline {baseline if baseline is not None else float('nan'):.4f}"
    if choice[objective] < best:
        reason += f"; within {params.tolerance:g} of the best {best:.4f} and faster ({choice['ms_per_token']:.1f} ms per token)"
    elif len(close) > 1:
        reason += f"; the fastest of {len(close)} within {params.tolerance:g} of the best"
    return {
        **decision,
        "shipped": True,
        "chosen": choice["model"],
        "quantization": choice.get("quantization") or "none",
        "score": choice[objective],
        "exact_match": choice["exact_match"],
        "f1": choice["f1"],
        "ms_per_token": choice["ms_per_token"],
        "tokens_per_s": choice["tokens_per_s"],
        "perplexity": choice.get("perplexity"),
        "reason": reason,
    }


def generator_folder(sft: str | Path, directory: str | Path, quantization: str) -> Path:
    """Copy the sft generator folder's model files to ``directory`` with a generator.json saying
    ``quantization`` (the other decoding settings kept)."""
    from llm.formats import CHECKPOINT_DIR, GPT_SHAPE_FILE, TOKENIZER_FILE
    from llm.generator import read_generator_config, write_generator_config

    sft, directory = Path(sft), Path(directory)
    directory.mkdir(parents=True)
    shutil.copyfile(sft / GPT_SHAPE_FILE, directory / GPT_SHAPE_FILE)
    shutil.copyfile(sft / TOKENIZER_FILE, directory / TOKENIZER_FILE)
    shutil.copytree(sft / CHECKPOINT_DIR, directory / CHECKPOINT_DIR)
    config = {k: v for k, v in read_generator_config(sft).items() if k not in ("format", "quantization")}
    write_generator_config(directory, **config, quantization=quantization)
    return directory


def not_shipped_folder(directory: str | Path, reason: str) -> Path:
    """``directory`` holding only ``NOT_SHIPPED.json`` {shipped: false, reason}: the folder DVC tracks
    when no generator is shipped (no generator.json, so no loader or server takes it for one)."""
    from components.common.io import write_json

    directory = Path(directory)
    directory.mkdir(parents=True)
    write_json(directory / a.NOT_SHIPPED, {"shipped": False, "reason": reason})
    return directory


def generator_markdown(decision: dict[str, Any] | None) -> str:
    """The generator section of decision.md (and the model card's)."""
    if decision is None:
        return "## Generator\n\nNot evaluated (no qa.json from evaluate, or no sft folder given).\n"
    lines = [
        "## Generator",
        "",
        f"Objective: maximise QA {decision['split']} {decision['objective']} ({decision['questions']} questions), "
        f"beating the frequent-candidate baseline ({decision['baseline']}) by more than "
        f"{decision['min_gain_over_baseline']:g}"
        + (f", at most {decision['max_ms_per_token']:g} ms per token" if decision["max_ms_per_token"] else "")
        + f"; int8 when within {decision['tolerance']:g} of the best and faster.",
        "",
        (
            f"Shipped: **{decision['chosen']}** (quantization {decision['quantization']}): {decision['reason']}."
            if decision["shipped"]
            else f"**{decision['reason']}**."
        ),
        "",
        "| model | EM | F1 | ms/token | tokens/s | perplexity | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in decision["models"]:
        verdict = (
            "**chosen**" if r["model"] == decision["chosen"] else ("; ".join(r["violations"]) or "eligible")
        )
        ppl = f"{r['perplexity']:.2f}" if r.get("perplexity") is not None else "-"
        ms = f"{r['ms_per_token']:.1f}" if r.get("ms_per_token") is not None else "-"
        tps = f"{r['tokens_per_s']:.1f}" if r.get("tokens_per_s") is not None else "-"
        lines.append(
            f"| {r['model']} | {r['exact_match']:.4f} | {r['f1']:.4f} | {ms} | {tps} | {ppl} | {verdict} |"
        )
    return "\n".join(lines) + "\n"
