"""sft: supervised fine-tuning of the pretrained megatron GPT on prompt -> response pairs.

Contract: ``run(pretrained, pairs, output, params, tokenized=None)`` loads the GPT written by
pretrain (``pretrained/model.json`` + ``pretrained/checkpoint``, ``llm.gpt.load_pretrained``) and
the tokenizer (``tokenized``: the tokenize output folder or a tokenizer.json; default
``pretrained/tokenizer.json``, so an sft output can be fine-tuned again), reads ``pairs`` (JSONL
``{prompt, response[, split, id]}``; ingest's ``qa.jsonl`` by default), and trains the whole GPT
on ``prompt + response + <|endoftext|>`` with the loss on the response tokens and the end token
only (every prompt target and the padding get loss weight 0: ``make_batch``'s mask). Writes into
``output`` (atomically) a generator folder (``llm.generator``):

- ``model.json`` + ``checkpoint/``: the fine-tuned GPT, in pretrain's layout (``load_pretrained``);
- ``tokenizer.json`` (a copy: the folder is self-contained) and ``generator.json`` (task,
  decoding defaults);
- ``steps.csv`` (DVC plot, one row per optimizer step: ``train_loss`` nats per response token,
  ``grad_norm``, ``lr``) and ``loss.csv`` (DVC plot, one row per evaluation: ``train_loss`` mean
  since the previous row, ``valid_loss`` nats per response token of the valid pairs);
- ``rejected.jsonl``: the malformed rows set aside, ``{line, reason, text}`` (reasons in
  ``REASONS``); ``metrics.json``: first and last train/valid response loss, pair counts, rejected
  counts by reason, steps, tokens, seconds, tokens/s, accelerator-hours.

Splits: a row's ``split`` (train / valid / test) is kept; a row without one goes to valid when the
stable hash of its prompt and response falls under ``valid_fraction``, else to train. Test rows
are never trained on or scored here (they are evaluate's). Prompts longer than the room left by
the response are cut from the left (the question at the end of a QA prompt stays); a response
that does not fit by itself is rejected. A run left with no train pair is refused (InputError).

Seeded: same inputs + params + thread count => the same weights and files, byte for byte.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from components.common import artifacts
from components.common.entry import InputError
from components.common.io import atomic_output_dir, open_uri, write_jsonl
from components.common.metrics import write_csv, write_metrics
from components.common.progress import Progress
from components.common.seed import stable_fraction
from components.sft.params import Params
from llm.formats import CHECKPOINT_DIR, GPT_SHAPE_FILE, TOKENIZER_FILE

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Why a row was set aside (stable strings: metrics keys and rejected.jsonl's ``reason``).
REASONS: tuple[str, ...] = (
    "not_json",
    "not_an_object",
    "bad_prompt",
    "bad_response",
    "empty_prompt",
    "empty_response",
    "bad_split",
    "response_too_long",
)
STEPS_FIELDS = ["step", "train_loss", "grad_norm", "lr"]
LOSS_FIELDS = ["step", "train_loss", "valid_loss"]


@dataclass(frozen=True)
class Pair:
    id: str
    prompt: str
    response: str
    split: str
    line: int = 0  # 1-based line in the pairs file


@dataclass(frozen=True)
class Encoded:
    """One training sequence: ``ids`` = prompt tokens + response tokens + end token; the first
    ``prompt_len`` of them are the prompt."""

    ids: list[int]
    prompt_len: int
    cut: int = 0  # prompt tokens dropped from the left to fit


def check_row(record: Any, line: int) -> Pair | str:
    """A parsed JSONL row -> a ``Pair`` (split "" when absent), or the reason it is malformed."""
    if not isinstance(record, dict):
        return "not_an_object"
    prompt, response, split = record.get("prompt"), record.get("response"), record.get("split")
    if not isinstance(prompt, str):
        return "bad_prompt"
    if not isinstance(response, str):
        return "bad_response"
    if not prompt:
        return "empty_prompt"
    if not response:
        return "empty_response"
    if split is not None and split not in SPLITS:
        return "bad_split"
    rid = record.get("id")
    return Pair(str(rid) if rid is not None else f"line-{line}", prompt, response, split or "", line)


def hash_split(pair: Pair, valid_fraction: float, seed: int) -> str:
    """The row's own split, or (none given) valid when the stable hash of prompt and response
    falls under ``valid_fraction``, else train: order-free, the same for the same text."""
    if pair.split:
        return pair.split
    return "valid" if stable_fraction(pair.prompt + "\0" + pair.response, seed) < valid_fraction else "train"


def read_pairs(path: str, params: Params) -> tuple[dict[str, list[Pair]], list[dict[str, Any]]]:
    """Pairs per split (file order) and the rejected rows ``{line, reason, text}`` (1-based lines)."""
    splits: dict[str, list[Pair]] = {s: [] for s in SPLITS}
    rejected: list[dict[str, Any]] = []
    with open_uri(path, "rt", encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                checked = check_row(json.loads(text), number)
            except json.JSONDecodeError:
                checked = "not_json"
            if isinstance(checked, str):
                rejected.append({"line": number, "reason": checked, "text": text.rstrip("\n")[:2000]})
                continue
            split = hash_split(checked, params.valid_fraction, params.seed)
            splits[split].append(Pair(checked.id, checked.prompt, checked.response, split, number))
    return splits, rejected


def encode_pair(
    prompt_ids: Sequence[int], response_ids: Sequence[int], eod_id: int, max_tokens: int
) -> Encoded | None:
    """``prompt + response + eod`` in at most ``max_tokens`` tokens: the prompt cut from the left
    (at least one prompt token kept); None when the response and the end token leave no room."""
    response = [*response_ids, eod_id]
    room = max_tokens - len(response)
    if room < 1:
        return None
    prompt = list(prompt_ids[-room:])
    return Encoded([*prompt, *response], len(prompt), len(prompt_ids) - len(prompt))


def encode_pairs(tokenizer: Any, pairs: Sequence[Pair], eod_id: int, max_tokens: int) -> list[Encoded | None]:
    """``encode_pair`` for each pair, prompt and response tokenised apart (as at generation time,
    where the prompt is encoded alone and the response is generated after it)."""
    prompts = tokenizer.encode_batch([p.prompt for p in pairs])
    responses = tokenizer.encode_batch([p.response for p in pairs])
    return [encode_pair(p.ids, r.ids, eod_id, max_tokens) for p, r in zip(prompts, responses, strict=True)]


def make_batch(sequences: Sequence[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids (B, T), targets (B, T), loss mask (B, T) float), right-padded to the longest
    ``len(ids) - 1``.

    ``targets[b, t]`` is the token after position t (padding: ``pad_id``); the mask is 1 where that
    target is a response or end token and 0 on every prompt target and every padding position."""
    width = max(len(s.ids) for s in sequences) - 1
    inputs = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    targets = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.float32)
    for row, seq in enumerate(sequences):
        ids = torch.tensor(seq.ids, dtype=torch.long)
        n = len(seq.ids) - 1
        inputs[row, :n] = ids[:-1]
        targets[row, :n] = ids[1:]
        # The target at position t is ids[t + 1]: a response token from t = prompt_len - 1 on.
        mask[row, seq.prompt_len - 1 : n] = 1.0
    return inputs, targets, mask


def masked_loss(losses: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of ``losses`` (B, T) weighted by the 0/1 ``mask`` (B, T), the mask's count)."""
    mask = mask.to(losses.dtype)
    return (losses * mask).sum(), mask.sum()


def response_loss(
    model: Any, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy in nats over the masked-in (response) targets, their count) of a
    batch. megatron's cross-entropy has no ignore index (a -100 target gives logsumexp, not 0), so
    the prompt and padding positions are weighted out by the mask, not by their target values."""
    from llm.gpt import token_losses

    device = next(model.parameters()).device
    losses = token_losses(model, inputs.to(device), targets.to(device))
    return masked_loss(losses.float(), mask.to(device))


@torch.no_grad()
def evaluate(model: Any, sequences: Sequence[Encoded], batch_size: int, pad_id: int) -> float:
    """Mean loss (nats per response token) of ``sequences``, in eval mode."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0.0
    try:
        order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i].ids), i))
        for start in range(0, len(order), batch_size):
            batch = [sequences[i] for i in order[start : start + batch_size]]
            loss_sum, n = response_loss(model, *make_batch(batch, pad_id))
            total, count = total + float(loss_sum), count + float(n)
    finally:
        model.train(was_training)
    return total / count


def lr_factor(step: int, params: Params) -> float:
    """Multiplier of ``params.lr`` at optimizer step ``step`` (0-based): linear warmup over
    ``warmup_steps`` (the first step already > 0), then cosine decay to ``min_lr`` at the end."""
    if step < params.warmup_steps:
        return (step + 1) / params.warmup_steps
    progress = (step - params.warmup_steps) / max(1, params.steps - params.warmup_steps)
    floor = params.min_lr / params.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_order(n: int, params: Params) -> list[list[int]]:
    """``params.steps`` batches of train indices: seeded permutations, one epoch after another
    (a batch never holds an index twice when ``batch_size <= n``)."""
    generator = torch.Generator().manual_seed(params.seed)
    stream: list[int] = []
    batches = []
    for _ in range(params.steps):
        while len(stream) < min(params.batch_size, n):
            stream += torch.randperm(n, generator=generator).tolist()
        batches.append(stream[: params.batch_size])
        stream = stream[params.batch_size :]
    return batches


def _param_groups(model: Any, params: Params) -> list[dict[str, Any]]:
    named = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in named if p.ndim >= 2]
    no_decay = [p for p in named if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": params.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def train(
    model: Any, train_seqs: Sequence[Encoded], valid_seqs: Sequence[Encoded], params: Params, pad_id: int
) -> tuple[list[dict[str, float]], list[dict[str, Any]], dict[str, float]]:
    """Train ``model`` in place; return (steps.csv rows, loss.csv rows, token counts and seconds)."""
    model.train()
    optimizer = torch.optim.AdamW(_param_groups(model, params), lr=params.lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, params))
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    valid = list(valid_seqs[: params.valid_examples] if params.valid_examples else valid_seqs)

    def valid_loss() -> float | None:
        return evaluate(model, valid, params.eval_batch_size, pad_id) if valid else None

    steps: list[dict[str, float]] = []
    losses: list[dict[str, Any]] = [{"step": 0, "train_loss": None, "valid_loss": valid_loss()}]
    tokens = response_tokens = 0
    since: list[float] = []
    started = time.monotonic()
    with Progress("sft", total=params.steps, unit="steps") as progress:
        for step, batch in enumerate(batch_order(len(train_seqs), params), start=1):
            loss_sum, n = response_loss(model, *make_batch([train_seqs[i] for i in batch], pad_id))
            loss = loss_sum / n
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if params.grad_clip > 0:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, params.grad_clip))
            else:
                grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainable])))
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            tokens += sum(len(train_seqs[i].ids) - 1 for i in batch)
            response_tokens += int(n)
            steps.append({"step": step, "train_loss": loss.item(), "grad_norm": grad_norm, "lr": lr})
            since.append(loss.item())
            if step % params.valid_interval == 0 or step == params.steps:
                losses.append(
                    {"step": step, "train_loss": sum(since) / len(since), "valid_loss": valid_loss()}
                )
                since = []
                log.info(
                    "sft step %d: train_loss %.4f valid_loss %s",
                    step,
                    losses[-1]["train_loss"],
                    "n/a" if losses[-1]["valid_loss"] is None else f"{losses[-1]['valid_loss']:.4f}",
                )
            progress.update(1, loss=loss.item())
    seconds = time.monotonic() - started
    return steps, losses, {"tokens": tokens, "response_tokens": response_tokens, "train_seconds": seconds}


def held_devices(params: Params, cuda: bool) -> tuple[int, str]:
    """(how many, what) the stage holds for its wall time: the pod's GPUs on CUDA, else one machine."""
    return (max(1, params.accelerator_count), "gpu") if cuda else (1, "cpu_machine")


def _refuse_empty(pairs: str, rejected: Sequence[dict[str, Any]]) -> None:
    by_reason = dict(sorted(Counter(r["reason"] for r in rejected).items()))
    raise InputError(f"sft: no train pair left in {pairs} ({len(rejected)} rejected: {by_reason})")


def _tokenizer_file(pretrained: str, tokenized: str | None) -> Path:
    if tokenized:
        path = Path(tokenized)
        return path / TOKENIZER_FILE if path.is_dir() else path
    return Path(pretrained) / TOKENIZER_FILE


def run(
    pretrained: str, pairs: str, output: str, params: Params, tokenized: str | None = None
) -> dict[str, Any]:
    """Fine-tune the pretrained GPT on the pairs' train split; write the generator folder (module doc)."""
    from llm.generator import write_generator_config
    from llm.gpt import load_pretrained, megatron_runtime, save_checkpoint
    from llm.tokenizer import load_tokenizer, special_ids

    started = time.monotonic()
    tokenizer_file = _tokenizer_file(pretrained, tokenized)
    for need in (Path(pretrained) / GPT_SHAPE_FILE, Path(pretrained) / CHECKPOINT_DIR, tokenizer_file):
        if not need.exists():
            raise InputError(f"sft: {need} not found (need a pretrain output folder and its tokenizer)")
    if not Path(pairs).is_file():
        raise InputError(f"sft: pairs file {pairs} not found")
    if params.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(params.cpu_threads)

    splits, rejected = read_pairs(pairs, params)
    if not splits["train"]:  # refused before the model is loaded
        _refuse_empty(pairs, rejected)
    tok = load_tokenizer(tokenizer_file)
    ids = special_ids(tok)
    with megatron_runtime(seed=params.seed):
        model, shape = load_pretrained(pretrained)
        if tok.get_vocab_size() > shape.vocab_size:
            raise InputError(
                f"sft: tokenizer has {tok.get_vocab_size()} tokens, the GPT only {shape.vocab_size} rows"
            )
        max_tokens = min(params.max_seq_tokens, shape.seq_length + 1)  # inputs are ids[:-1]
        encoded: dict[str, list[Encoded]] = {}
        truncated = 0
        for split in ("train", "valid"):
            encoded[split] = []
            for pair, seq in zip(
                splits[split], encode_pairs(tok, splits[split], ids["eod_id"], max_tokens), strict=True
            ):
                if seq is None:
                    rejected.append({"line": pair.line, "reason": "response_too_long", "text": pair.id})
                    continue
                truncated += seq.cut > 0
                encoded[split].append(seq)
        rejected.sort(key=lambda r: r["line"])
        by_reason = Counter(r["reason"] for r in rejected)
        for r in rejected[:5]:
            log.warning("sft: set aside line %s (%s)", r["line"], r["reason"])
        if not encoded["train"]:
            _refuse_empty(pairs, rejected)
        if not encoded["valid"]:
            log.warning("sft: no valid pair in %s; no valid loss", pairs)
        steps, losses, counts = train(model, encoded["train"], encoded["valid"], params, ids["pad_id"])
        valid_losses = [r["valid_loss"] for r in losses]
        metrics: dict[str, Any] = {
            "train_pairs": len(encoded["train"]),
            "valid_pairs": len(encoded["valid"]),
            "valid_pairs_scored": min(len(encoded["valid"]), params.valid_examples or len(encoded["valid"])),
            "test_pairs": len(splits["test"]),
            "rejected": len(rejected),
            "rejected_by_reason": {reason: by_reason.get(reason, 0) for reason in REASONS},
            "truncated_prompts": truncated,
            "steps": params.steps,
            "train_loss_first": steps[0]["train_loss"],
            "train_loss_last": steps[-1]["train_loss"],
            "valid_loss_first": valid_losses[0],
            "valid_loss_last": valid_losses[-1],
            "tokens": counts["tokens"],
            "response_tokens": counts["response_tokens"],
            "train_seconds": counts["train_seconds"],
            "tokens_per_s": counts["tokens"] / max(counts["train_seconds"], 1e-9),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        with atomic_output_dir(output) as out:
            shape.to_json(out / GPT_SHAPE_FILE)
            save_checkpoint(model, out / CHECKPOINT_DIR)
            shutil.copyfile(tokenizer_file, out / TOKENIZER_FILE)
            write_generator_config(
                out,
                task=params.task,
                max_new_tokens=params.max_new_tokens,
                stop=list(params.stop),
                choice_template=params.choice_template,
            )
            write_csv(out / artifacts.STEPS, steps, STEPS_FIELDS)
            write_csv(out / artifacts.LOSS, losses, LOSS_FIELDS)
            write_jsonl(out / artifacts.SFT_REJECTED, rejected)
            seconds = time.monotonic() - started
            held, kind = held_devices(params, next(model.parameters()).device.type == "cuda")
            metrics.update(
                seconds=seconds,
                accelerator_hours=seconds * held / 3600.0,
                held_devices=held,
                held_device_kind=kind,
            )
            metrics = write_metrics(out, metrics)
    log.info(
        "sft: %d steps, response loss train %.4f -> %.4f, valid %s -> %s, %.0f tokens/s, %.1fs",
        metrics["steps"],
        metrics["train_loss_first"],
        metrics["train_loss_last"],
        metrics["valid_loss_first"],
        metrics["valid_loss_last"],
        metrics["tokens_per_s"],
        metrics["seconds"],
    )
    return metrics
