"""evaluate, the generative part: the QA table of the fine-tuned GPT, its int8 variant, the
pretrained GPT prompted the same way, and the most-frequent-candidate baseline.

Contract: ``evaluate_qa(qa, sft, pretrained, params, perplexity_of)`` returns
``(rows, generations, info)``:

- ``rows``: one per model, in the order ``frequent_candidate`` (the baseline: the candidate entity
  that occurs most often in the passage, Hermann et al. 2015's "maximum frequency" baseline),
  ``pretrained`` (the pretrained GPT, no fine-tuning, with the sft folder's tokenizer and decoding
  settings), ``sft`` (the fine-tuned float model), ``sft-int8`` (the same checkpoint with dynamic
  int8 linear layers, ``llm.generator.load_generator(..., quantization="int8-dynamic")``): exact
  match and token F1 of ``answer_of(generated text)`` against the answer (SQuAD's normalisation),
  the same of the candidate the GPT scores most likely as the response (``ranked_exact_match``,
  ``ranked_f1``: Hermann et al. 2015's protocol, the answer chosen among the passage's entities, by
  ``Generator.choose``; the baseline's choice is a candidate too, so its ranked
  scores are its scores),
  generated tokens, tokens/s (generated tokens / wall seconds of the generate calls),
  ms per token (the mean decoding step after the first token, weighted by steps), time to first
  token, and the GPT's perplexity on the first ``perplexity_tokens`` of the held-out windows (the
  same windows for every GPT; None for the baseline);
- ``generations``: the ``sft`` model's outputs, one per question, C3's
  ``{id, prompt, output, tokens_in, tokens_out, ms_per_token, finish_reason}`` (the monitor's
  reference); ``prompt`` is the text the model saw (left-truncated to fit, as the server does);
- ``info``: split, questions, max_new_tokens, batch size.

Decoding is greedy and batched (``params.batch_size`` prompts per call), so every model answers the
same prompts under the same settings and the figures are comparable. Exact match and F1 are
deterministic; the speeds are wall-clock measurements (noisy on a shared machine), so only the
scores and perplexities go to metrics.json.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from components.common.io import read_jsonl
from components.common.progress import Progress
from components.evaluate.params import QAParams

log = logging.getLogger(__name__)

BASELINE = "frequent_candidate"
PRETRAINED = "pretrained"
SFT = "sft"
SFT_INT8 = "sft-int8"
INT8 = "int8-dynamic"
QUESTION_MARK = "\nQuestion:"  # where llm.qa.PROMPT_TEMPLATE's question starts

QA_COLUMNS = (
    ("model", "model", "{}"),
    ("exact_match", "EM", "{:.4f}"),
    ("f1", "F1", "{:.4f}"),
    ("ranked_exact_match", "ranked EM", "{:.4f}"),
    ("ranked_f1", "ranked F1", "{:.4f}"),
    ("perplexity", "perplexity", "{:.2f}"),
    ("tokens_per_s", "tokens/s", "{:.1f}"),
    ("ms_per_token", "ms/token", "{:.1f}"),
    ("ttft_ms", "TTFT ms", "{:.1f}"),
    ("tokens_out", "tokens out", "{:,}"),
)


def qa_functions() -> dict[str, Any]:
    """The floor's QA helpers (C1): the answer part of a generation, the frequency baseline, and
    SQuAD's exact match and token F1."""
    from llm.qa import answer_of, most_frequent_candidate
    from llm.scoring import exact_match, token_f1

    return {
        "answer_of": answer_of,
        "most_frequent_candidate": most_frequent_candidate,
        "exact_match": exact_match,
        "token_f1": token_f1,
    }


def read_questions(qa: str | Path, params: QAParams) -> list[dict[str, Any]]:
    """The first ``max_questions`` rows of ``params.split`` in ``qa`` (file order; 0 = all)."""
    rows = []
    for row in read_jsonl(qa):
        if row.get("split") == params.split:
            rows.append(row)
            if params.max_questions and len(rows) == params.max_questions:
                break
    if not rows:
        raise ValueError(f"evaluate: {qa} has no {params.split!r} questions")
    return rows


def scores(
    predictions: list[str], answers: list[str], fns: dict[str, Any], prefix: str = ""
) -> dict[str, float]:
    """Mean exact match and token F1 of ``predictions`` against ``answers`` (0-1), keyed
    ``{prefix}exact_match`` and ``{prefix}f1``."""
    n = max(len(answers), 1)
    pairs = list(zip(predictions, answers, strict=True))
    return {
        f"{prefix}exact_match": sum(float(fns["exact_match"](p, a)) for p, a in pairs) / n,
        f"{prefix}f1": sum(float(fns["token_f1"](p, a)) for p, a in pairs) / n,
    }


def ranked_answers(generator: Any, questions: list[dict[str, Any]], batch_size: int) -> list[str]:
    """For each question, the candidate the GPT finds most likely as the response
    (``Generator.choose``, as POST /generate's ``choices`` does; ties: the first candidate)."""
    chosen = []
    with Progress("rank candidates", total=len(questions), unit="questions") as progress:
        for q in questions:
            index, _ = generator.choose(q["prompt"], q["candidates"], batch_size=batch_size)
            chosen.append(q["candidates"][index])
            progress.update(1)
    return chosen


def passage_of(prompt: str) -> str:
    """The passage part of a QA prompt (``llm.qa.format_prompt``'s text before the question): the
    question is left out, since its other title entities would count for the baseline."""
    return prompt.rsplit(QUESTION_MARK, 1)[0]


def baseline_answers(questions: list[dict[str, Any]], fns: dict[str, Any]) -> list[str]:
    """The most frequent candidate of each question's passage."""
    return [fns["most_frequent_candidate"](passage_of(q["prompt"]), q["candidates"]) for q in questions]


def pretrained_generator_dir(pretrained: str | Path, sft: str | Path, directory: str | Path) -> Path:
    """A generator folder in ``directory`` made of the pretrained GPT's model.json and checkpoint and
    the sft folder's tokenizer.json and generator.json (quantization none): the same tokenizer and
    decoding settings as the fine-tuned model, without the fine-tuning."""
    from llm.formats import CHECKPOINT_DIR, GPT_SHAPE_FILE, TOKENIZER_FILE
    from llm.generator import read_generator_config, write_generator_config

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(pretrained) / GPT_SHAPE_FILE, directory / GPT_SHAPE_FILE)
    shutil.copytree(Path(pretrained) / CHECKPOINT_DIR, directory / CHECKPOINT_DIR)
    shutil.copyfile(Path(sft) / TOKENIZER_FILE, directory / TOKENIZER_FILE)
    config = {k: v for k, v in read_generator_config(sft).items() if k not in ("format", "quantization")}
    write_generator_config(directory, **config, quantization="none")
    return directory


def run_generator(generator: Any, prompts: list[str], gen_params: Any, batch_size: int, name: str):
    """Batched greedy generation of ``prompts``: (texts, per-question records, speed figures)."""
    texts: list[str] = []
    records: list[dict[str, Any]] = []
    seconds = steps_time = 0.0
    ttft = []
    steps = 0
    with Progress(f"generate {name}", total=len(prompts), unit="prompts") as progress:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            seen = generator.truncate(batch, gen_params.max_new_tokens)
            outs, result = generator.generate(seen, gen_params)
            seconds += result.seconds
            ttft.append(result.time_to_first_token_s)
            later = max(result.steps - 1, 0)
            steps += later
            steps_time += result.per_token_latency_s * later
            for prompt, out in zip(seen, outs, strict=True):
                texts.append(out.text)
                records.append(
                    {
                        "prompt": prompt,
                        "output": out.text,
                        "tokens_in": out.generation.prompt_tokens,
                        "tokens_out": len(out.generation.tokens),
                        "ms_per_token": round(result.per_token_latency_s * 1000.0, 3),
                        "finish_reason": out.generation.finish_reason,
                    }
                )
            progress.update(len(batch))
    tokens_out = sum(r["tokens_out"] for r in records)
    speed = {
        "tokens_out": tokens_out,
        "seconds": seconds,
        "tokens_per_s": tokens_out / seconds if seconds > 0 else 0.0,
        "ms_per_token": 1000.0 * steps_time / steps if steps else 0.0,
        "ttft_ms": 1000.0 * sum(ttft) / len(ttft) if ttft else 0.0,
    }
    return texts, records, speed


def evaluate_qa(
    qa: str | Path,
    sft: str | Path,
    pretrained: str | Path,
    params: QAParams,
    perplexity_of: Any = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The QA rows, the sft generations and the run's settings; see the module doc.
    ``perplexity_of(model) -> float``: the GPT's perplexity on the held-out text, the same windows
    for every GPT (None = none)."""
    from llm.generator import load_generator

    fns = qa_functions()
    questions = read_questions(qa, params)
    prompts = [q["prompt"] for q in questions]
    answers = [q["answer"] for q in questions]
    baseline = baseline_answers(questions, fns)
    rows: list[dict[str, Any]] = [
        {
            "model": BASELINE,
            "kind": "baseline",
            "quantization": None,
            **scores(baseline, answers, fns),
            **scores(baseline, answers, fns, prefix="ranked_"),
            "perplexity": None,
        }
    ]
    generations: list[dict[str, Any]] = []
    max_new_tokens = params.max_new_tokens
    with tempfile.TemporaryDirectory(prefix="evaluate-pretrained-") as tmp:
        folders = [
            (PRETRAINED, pretrained_generator_dir(pretrained, sft, Path(tmp) / "generator"), None),
            (SFT, Path(sft), None),
            (SFT_INT8, Path(sft), INT8),
        ]
        for name, folder, quantization in folders:
            generator = load_generator(folder, quantization=quantization)
            gen_params = generator.default_params(
                temperature=0.0, **({"max_new_tokens": max_new_tokens} if max_new_tokens else {})
            )
            max_new_tokens = gen_params.max_new_tokens
            # Warm-up (first-call allocations) outside the timings.
            generator.generate(generator.truncate(prompts[:1], gen_params.max_new_tokens), gen_params)
            texts, records, speed = run_generator(generator, prompts, gen_params, params.batch_size, name)
            predicted = [fns["answer_of"](t) for t in texts]
            ranked = ranked_answers(generator, questions, params.batch_size)
            ppl = perplexity_of(generator.model) if perplexity_of is not None else None
            rows.append(
                {
                    "model": name,
                    "kind": "generator",
                    "quantization": generator.quantization,
                    "version": generator.version,
                    **scores(predicted, answers, fns),
                    **scores(ranked, answers, fns, prefix="ranked_"),
                    "perplexity": ppl,
                    **speed,
                }
            )
            if name == SFT:
                generations = [{"id": q["id"], **r} for q, r in zip(questions, records, strict=True)]
            del generator
    info = {
        "split": params.split,
        "questions": len(questions),
        "max_new_tokens": max_new_tokens,
        "batch_size": params.batch_size,
        "decoding": "greedy",
    }
    return rows, generations, info


def qa_table(rows: list[dict[str, Any]]) -> str:
    """One Markdown row per model with the ``QA_COLUMNS`` (missing values as '-')."""
    lines = ["| " + " | ".join(title for _, title, _ in QA_COLUMNS) + " |"]
    lines.append("|" + "|".join("---" for _ in QA_COLUMNS) + "|")
    for row in rows:
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in QA_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def qa_metrics(rows: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """The deterministic part for metrics.json (under ``qa``): scores and perplexities per model."""
    return {
        "questions": info["questions"],
        "split": info["split"],
        "models": {
            r["model"]: {
                k: r[k] for k in ("exact_match", "f1", "ranked_exact_match", "ranked_f1", "perplexity")
            }
            for r in rows
        },
    }
