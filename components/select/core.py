"""select: choose the model to ship from the evaluate stage's table, behind a no-regression gate.

Contract: ``run(evaluation, finetuned, candidates, output, params, promoted)``:

1. reads ``evaluation/models.json`` (one row per model; see ``components.evaluate.core``);
2. keeps the rows that meet the constraints: p95 single-request latency <= ``max_p95_latency_ms``
   and size on disk <= ``max_size_mb`` (0 = no limit). Every row is a model folder
   (``model_folder``): the fine-tuned model, the compress variants, and the TF-IDF baseline that
   evaluate saved as ``evaluation/baseline/`` (a tfidf-logreg folder), all candidates under the
   same rules;
3. picks the one with the best ``metric``; among rows within ``prefer_smaller_within`` of the
   best, the smallest on disk (then the fastest, then the name);
4. the gate: if the promotion record ``promoted`` (JSON) names an earlier model, the choice must
   score at least that model's score - ``tolerance``; otherwise ``GateRefused`` (the CLI exits 1
   with the message) and nothing is promoted;
5. writes into ``output`` (atomically): ``decision.json`` (choice, reasons, constraints, every
   row with its verdict), ``decision.md`` (the same as Markdown with the whole table),
   ``MODEL_CARD.md``, ``metrics.json``, ``predictions.jsonl`` (the chosen model's test
   predictions from ``evaluation/predictions/<model>.jsonl``, when present: deploy's smoke-test
   reference), and ``model/``: a copy of the chosen model folder's files (``llm.formats.model_files``;
   what deploy bundles and the server loads, safetensors + JSON only, of either kind); then
   updates ``promoted``;
6. with ``sft`` and evaluate's ``qa.json``: the generator's choice under ``select.generative``
   (``components.select.generative``): ``decision.json``'s ``generator``, a section of
   decision.md and the model card, ``generator/`` (the chosen generator folder, its
   generator.json naming the quantization) and ``generations.jsonl`` (the float model's test
   generations) when one is shipped; none shipped is recorded with the reasons and does not stop
   the classifier's release (unless ``select.generative.required``).

A model that meets no constraint is not an error of the gate: ``NoCandidate`` names why each
row failed.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from components.common import artifacts as a
from components.common.entry import RUN_RECORD, Costs, StageRefused
from components.common.io import atomic_output_dir, is_remote, write_json
from components.common.metrics import write_metrics
from components.select import roi
from components.select.params import Params
from llm.formats import CONFIG_FILE, TFIDF_LOGREG, model_files, model_kind

log = logging.getLogger(__name__)

FINETUNED = "finetuned"
MODEL_DIR = a.MODEL_DIR


class GateRefused(StageRefused):
    """The chosen model scores below the model promoted before (beyond the tolerance)."""


class NoCandidate(StageRefused):
    """No deployable model meets the constraints."""


def model_folder(row: dict[str, Any], evaluation: str, finetuned: str, variants: str | None) -> Path:
    """Where the model of ``row`` lies: the finetune output, evaluate's ``baseline/`` for the
    baseline row, else the compress output's folder of that name."""
    if row["model"] == FINETUNED:
        return Path(finetuned)
    if row.get("kind") == "baseline":
        return Path(evaluation) / a.BASELINE_DIR
    return Path(variants or "") / row["model"]


def violations(row: dict[str, Any], params: Params) -> list[str]:
    """Why ``row`` may not be shipped (empty = eligible)."""
    reasons = []
    if params.max_p95_latency_ms and row["latency_p95_ms"] > params.max_p95_latency_ms:
        reasons.append(f"p95 latency {row['latency_p95_ms']:.1f} ms > {params.max_p95_latency_ms:g} ms")
    if params.max_size_mb and row["size_bytes"] / 1e6 > params.max_size_mb:
        reasons.append(f"size {row['size_bytes'] / 1e6:.2f} MB > {params.max_size_mb:g} MB")
    return reasons


def choose(rows: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    """The row to ship (see the module doc, steps 2-3); ``NoCandidate`` when none is eligible."""
    eligible = [r for r in rows if not violations(r, params)]
    if not eligible:
        why = "; ".join(f"{r['model']}: {', '.join(violations(r, params))}" for r in rows)
        raise NoCandidate(f"select: no model meets the constraints ({why})")
    best = max(r[params.metric] for r in eligible)
    close = [r for r in eligible if r[params.metric] >= best - params.prefer_smaller_within]
    return min(close, key=lambda r: (r["size_bytes"], r["latency_p95_ms"], r["model"]))


def read_promoted(path: str | Path | None) -> dict[str, Any] | None:
    """The promotion record, or None when there is none yet (no file, or ``{}``: the record a
    fresh clone holds)."""
    if not path or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text(encoding="utf-8")) or None


def refusal_path(output: str) -> Path | None:
    """Where a refused run records why: ``<output>.refused.json`` beside a local output (the
    output itself keeps the last accepted run, which DVC and deploy still use); None for a
    remote output (the failed Kubeflow task's log says why)."""
    return None if is_remote(output) else Path(f"{str(output).rstrip('/')}.refused.json")


def gate(choice: dict[str, Any], promoted: dict[str, Any] | None, params: Params) -> str:
    """Refuse (``GateRefused``) a choice scoring below the promoted model's score - tolerance on
    ``params.metric``; return the reason it passes otherwise."""
    if promoted is None:
        return "no model promoted before"
    before = promoted.get("scores", {}).get(params.metric)
    if before is None:
        return f"the promoted model has no {params.metric}; nothing to compare"
    now = choice[params.metric]
    if now < before - params.tolerance:
        raise GateRefused(
            f"select: refusing to promote {choice['model']!r}: {params.metric} {now:.4f} is below "
            f"{before:.4f} of the model promoted before ({promoted.get('model')!r}, "
            f"{promoted.get('promoted_at', 'earlier')}) by more than the tolerance {params.tolerance:g}"
        )
    return f"{params.metric} {now:.4f} >= {before:.4f} - {params.tolerance:g} of the model promoted before"


def test_split(evaluation: str, model: str, split: str | None) -> dict[str, Any] | None:
    """What the scores were measured on: ``{split, examples, fingerprint}``, the fingerprint a SHA-1
    of the sorted (id, text, label) of the model's scored examples (evaluate's
    ``predictions/<model>.jsonl``); None when evaluate wrote no predictions."""
    import hashlib

    path = Path(evaluation) / a.PREDICTIONS_DIR / f"{model}.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    digest = hashlib.sha1()
    for rid, text, label in sorted(
        (str(r.get("id")), str(r.get("text")), str(r.get("label"))) for r in records
    ):
        digest.update(json.dumps([rid, text, label], ensure_ascii=False).encode("utf-8") + b"\n")
    return {"split": split, "examples": len(records), "fingerprint": digest.hexdigest()}


def same_test_split(current: dict[str, Any] | None, promoted: dict[str, Any] | None) -> str:
    """Refuse (``GateRefused``) to compare scores measured on different test examples; return what
    was compared otherwise. A record without a fingerprint (older ones) is compared as it is."""
    before = (promoted or {}).get("test_split")
    if not before or not current:
        return "test split not recorded for both; scores compared as they are"
    if before.get("fingerprint") != current.get("fingerprint"):
        raise GateRefused(
            f"select: refusing to compare with the model promoted before ({promoted.get('model')!r}): it was scored "
            f"on another test split ({before.get('examples')} examples, fingerprint {str(before.get('fingerprint'))[:12]}) "
            f"than this run ({current.get('examples')} examples, {str(current.get('fingerprint'))[:12]}), so the scores "
            "are not comparable. The flywheel never changes the test split; if you changed it on purpose, "
            "clear the promotion record (write {} to it) to promote without a comparison"
        )
    return f"the same {current.get('examples')} test examples (fingerprint {str(current.get('fingerprint'))[:12]})"


def stage_json(folder: str | None, name: str) -> dict[str, Any] | None:
    """``folder/name`` as JSON (a stage's metrics.json or run.json), None when absent."""
    if not folder or not (Path(folder) / name).is_file():
        return None
    return json.loads((Path(folder) / name).read_text(encoding="utf-8"))


def candidate_rois(
    rows: list[dict[str, Any]],
    previous: dict[str, Any] | None,
    evaluation: str,
    finetuned: str,
    variants: str | None,
    pretrained: str | None,
    costs: Costs | None,
) -> dict[str, dict[str, Any]]:
    """``{model: roi block}`` of every row (``components.select.roi``): training hours from the
    training stages' metrics.json, priced at the pretrain run's start (its run.json)."""
    metrics = {
        "pretrain": stage_json(pretrained, a.METRICS),
        "finetune": stage_json(finetuned, a.METRICS),
        "compress": stage_json(variants, a.METRICS),
    }
    started = roi.parse_started(stage_json(pretrained, RUN_RECORD))
    return {r["model"]: roi.return_on_investment(r, rows, previous, metrics, started, costs) for r in rows}


def _table(rows: list[dict[str, Any]], params: Params, chosen: str) -> str:
    head = "| model | variant | accuracy | macro-F1 | ECE | p50 ms | p95 ms | reviews/s | size MB | parameters | verdict |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        verdict = "**chosen**" if r["model"] == chosen else ("; ".join(violations(r, params)) or "eligible")
        lines.append(
            f"| {r['model']} | {r.get('variant', '')} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['ece']:.4f} "
            f"| {r['latency_p50_ms']:.1f} | {r['latency_p95_ms']:.1f} | {r['throughput_per_s']:.0f} "
            f"| {r['size_bytes'] / 1e6:.2f} | {r['parameters']:,} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _constraints(params: Params) -> str:
    parts = [f"maximise test {params.metric}"]
    parts.append(
        f"p95 latency <= {params.max_p95_latency_ms:g} ms"
        if params.max_p95_latency_ms
        else "no latency limit"
    )
    parts.append(f"size <= {params.max_size_mb:g} MB" if params.max_size_mb else "no size limit")
    return ", ".join(parts)


def _what_it_is(config: dict[str, Any]) -> list[str]:
    """The model card's description of the model folder whose classifier.json is ``config``
    (with its ``kind``)."""
    labels = ", ".join(config.get("labels", []))
    if config.get("kind") == TFIDF_LOGREG:
        low, high = config.get("ngram_range", [1, 1])
        trained = config.get("trained_with", {})
        return [
            f"A {labels} review classifier: TF-IDF of the lowercased text's word {low}- to {high}-grams "
            f"({config.get('features'):,} terms seen in at least {trained.get('vectorizer', {}).get('min_df')} train "
            f"reviews; sublinear tf, idf, {config.get('norm') or 'no'} norm) and a logistic regression "
            f"(C = {trained.get('classifier', {}).get('C')}, {trained.get('classifier', {}).get('solver')}), "
            "trained on the task's train split by the evaluate stage. It reads the whole text (no truncation); "
            "its token count is the number of words.",
            "",
            "Files: `classifier.json` (settings, labels), `vocabulary.json` (the terms, in column order), "
            "`model.safetensors` (idf, coefficients, intercept; safe to load: no pickle). "
            "Load with `llm.served.load_model(folder)` (numpy only at serve time).",
        ]
    gpt = config.get("gpt", {})
    return [
        f"A {labels} review classifier: a megatron-core GPT backbone "
        f"({gpt.get('num_layers')} layers, hidden size {gpt.get('hidden_size')}, vocabulary {gpt.get('vocab_size')}) "
        f"pretrained on this project's news + review corpus, {config.get('pooling')} pooling and a linear head, "
        f"fine-tuned on the task's train split. Inputs are cut to {config.get('max_length')} tokens. "
        f"Quantization: {config.get('quantization') or 'none (float32)'}.",
        "",
        "Files: `classifier.json` (shape, labels), `model.safetensors` (weights; safe to load), "
        "`tokenizer.json`. Load with `llm.served.load_model(folder)`.",
    ]


def model_card(
    choice: dict[str, Any], rows: list[dict[str, Any]], table: dict[str, Any], config: dict[str, Any]
) -> str:
    """A short model card: what the model is, how it was chosen, how it scores, its limits."""
    baseline = next((r for r in rows if r.get("kind") == "baseline" and r is not choice), None)
    per_class = "\n".join(
        f"| {label} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | {s['support']} |"
        for label, s in choice["per_class"].items()
    )
    lines = [
        f"# Model card: {choice['model']} ({choice.get('variant', 'float')})",
        "",
        "## What it is",
        "",
        *_what_it_is(config),
        "",
        f"## Scores on the {table.get('task_split', 'test')} split ({table.get('examples')} reviews)",
        "",
        f"- accuracy {choice['accuracy']:.4f}, macro-F1 {choice['macro_f1']:.4f}, "
        f"expected calibration error {choice['ece']:.4f}",
        f"- latency p50 {choice['latency_p50_ms']:.1f} ms / p95 {choice['latency_p95_ms']:.1f} ms per single review, "
        f"{choice['throughput_per_s']:.0f} reviews/s in batches (CPU, measured during the evaluate stage; noisy)",
        f"- size {choice['size_bytes'] / 1e6:.2f} MB, {choice['parameters']:,} parameters",
    ]
    if baseline:
        lines.append(
            f"- TF-IDF + logistic regression baseline: accuracy {baseline['accuracy']:.4f}, "
            f"macro-F1 {baseline['macro_f1']:.4f}"
        )
    lines += [
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
        per_class,
        "",
        "## Intended use and limits",
        "",
        "- English movie-review sentiment (Rotten Tomatoes style short reviews). Other domains (plot "
        "summaries, news) are out of distribution: the monitor stage watches for that drift.",
        "- A small model trained on CPU for a demo: expect errors on sarcasm, negation and mixed reviews.",
        "- Scores are probabilities of the predicted label; see ECE above for how far to trust them.",
        "",
    ]
    return "\n".join(lines)


def run(
    evaluation: str,
    finetuned: str,
    variants: str | None,
    output: str,
    params: Params,
    promoted: str | None = None,
    now: str | None = None,
    sft: str | None = None,
    pretrained: str | None = None,
    costs: Costs | None = None,
) -> dict[str, Any]:
    """Choose, gate, and export the model to ship; see the module doc. ``now``: the timestamp
    recorded on promotion (ISO 8601; default the current UTC time). ``sft``: the sft output folder
    (the generator), chosen under ``params.generative`` from evaluate's qa.json
    (``components.select.generative``). ``pretrained``: the pretrain output folder (its
    metrics.json and run.json: training hours and start) and ``costs``: the prices and training
    window (``components.common.entry.stage_costs``), for the ``roi`` block
    (``components.select.roi``); without them its figures say what is unknown."""
    import datetime

    from components.select.generative import (
        NoGenerator,
        choose_generator,
        generator_folder,
        generator_markdown,
        not_shipped_folder,
        read_qa,
    )

    qa = read_qa(evaluation) if params.generative.enabled and sft else None
    generator = choose_generator(qa, params.generative) if qa is not None else None
    if generator is not None and not generator["shipped"] and params.generative.required:
        raise NoGenerator(f"select: {generator['reason']} (select.generative.required is set)")

    table = json.loads((Path(evaluation) / a.MODELS).read_text(encoding="utf-8"))
    rows = table["models"]
    choice = choose(rows, params)
    previous = read_promoted(promoted)
    refusal = refusal_path(output)
    split = test_split(evaluation, choice["model"], table.get("task_split"))
    try:
        compared = same_test_split(split, previous) if previous is not None else None
        gate_reason = gate(choice, previous, params)  # raises before the output is touched
        if compared is not None:
            gate_reason = f"{gate_reason}, on {compared}"
    except GateRefused as exc:
        # The previous outputs stay as they were; the reasons go beside them.
        if refusal is not None:
            write_json(
                refusal,
                {"refused": str(exc), "chosen": choice, "previous": previous, "tolerance": params.tolerance},
            )
        raise GateRefused(f"{exc} (details: {refusal})" if refusal else str(exc)) from None
    if refusal is not None and refusal.exists():
        refusal.unlink()
    source = model_folder(choice, evaluation, finetuned, variants)
    if not (source / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"select: the chosen model {choice['model']!r} has no folder at {source}")
    files = model_files(source)
    rois = candidate_rois(rows, previous, evaluation, finetuned, variants, pretrained, costs)
    config = {"kind": model_kind(source), **json.loads((source / CONFIG_FILE).read_text(encoding="utf-8"))}
    decision = {
        "chosen": choice["model"],
        "variant": choice.get("variant", "float"),
        "metric": params.metric,
        "score": choice[params.metric],
        "objective": _constraints(params),
        "gate": gate_reason,
        "previous": previous,
        "test_split": split,
        "kind": config["kind"],
        "models": [{**r, "violations": violations(r, params), "roi": rois[r["model"]]} for r in rows],
        "generator": generator,
        "roi": rois[choice["model"]],
    }
    with atomic_output_dir(output) as out:
        out = Path(out)
        # Only the files the server needs: the weights are safetensors, nothing pickled.
        (out / MODEL_DIR).mkdir()
        for name in files:
            shutil.copyfile(source / name, out / MODEL_DIR / name)
        # The chosen model's own test predictions: deploy's smoke-test reference (if evaluate wrote them).
        reference = Path(evaluation) / a.PREDICTIONS_DIR / f"{choice['model']}.jsonl"
        if reference.is_file():
            shutil.copyfile(reference, out / a.PREDICTIONS)
        if generator is not None and generator["shipped"]:
            generator_folder(sft, out / a.GENERATOR_DIR, generator["quantization"])
            # The float model's test generations: deploy's smoke-test reference.
            if (Path(evaluation) / a.GENERATIONS).is_file():
                shutil.copyfile(Path(evaluation) / a.GENERATIONS, out / a.GENERATIONS)
        elif sft:
            # What DVC tracks exists either way: the reason instead of a generator.
            if generator:
                reason = generator["reason"]
            elif not params.generative.enabled:
                reason = "no generator shipped (select.generative.enabled is false)"
            else:
                reason = "no generator shipped (no qa.json from evaluate)"
            not_shipped_folder(out / a.GENERATOR_DIR, reason)
            (out / a.GENERATIONS).write_text("", encoding="utf-8")
        write_json(out / a.DECISION_JSON, decision)
        (out / a.DECISION_MD).write_text(
            f"# Model selection\n\nObjective: {decision['objective']}.\n\n"
            f"Chosen: **{choice['model']}** ({params.metric} {choice[params.metric]:.4f}). Gate: {gate_reason}.\n\n"
            + _table(rows, params, choice["model"])
            + "\n"
            + roi.markdown(rois[choice["model"]])
            + "\nEvery candidate (training USD beyond the baseline's own for USD per point vs baseline):\n\n"
            + roi.candidates_markdown([rois[r["model"]] for r in rows])
            + "\n"
            + generator_markdown(generator),
            encoding="utf-8",
        )
        card = (
            model_card(choice, rows, table, config)
            + "\n"
            + roi.markdown(rois[choice["model"]])
            + "\n"
            + generator_markdown(generator)
        )
        (out / a.MODEL_CARD).write_text(card, encoding="utf-8")
        (out / MODEL_DIR / a.MODEL_CARD).write_text(card, encoding="utf-8")
        metrics = write_metrics(
            out,
            {
                "chosen": choice["model"],
                params.metric: choice[params.metric],
                "accuracy": choice["accuracy"],
                "size_bytes": choice["size_bytes"],
                "eligible_models": sum(not violations(r, params) for r in rows),
                **roi.headline(rois[choice["model"]]),
                **(
                    {
                        "generator_shipped": generator["shipped"],
                        "generator": generator["chosen"],
                        f"generator_{generator['objective']}": generator["score"],
                    }
                    if generator is not None
                    else {}
                ),
            },
        )
    if promoted:
        stamp = now or datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
        Path(promoted).parent.mkdir(parents=True, exist_ok=True)
        write_json(
            promoted,
            {
                "model": choice["model"],
                "variant": choice.get("variant", "float"),
                "promoted_at": stamp,
                "scores": {"accuracy": choice["accuracy"], "macro_f1": choice["macro_f1"]},
                "size_bytes": choice["size_bytes"],
                "test_split": split,
            },
        )
    log.info(
        "select: chose %s (%s %.4f); %s", choice["model"], params.metric, choice[params.metric], gate_reason
    )
    return metrics
