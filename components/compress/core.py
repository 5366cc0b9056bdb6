"""compress: smaller / faster variants of the fine-tuned classifier, each a model folder that the
same ``load_classifier`` loads (evaluate, select and the model server need no special case).

Contract: ``run(model, tokenizer, task, output, params)`` writes into ``output`` (atomically) one
folder per variant in ``params.variants`` (``classifier.json``, ``model.safetensors``,
``tokenizer.json``, ``metrics.json``) and ``metrics.json`` with, per variant, its size on disk
(bytes), parameter count, and on the task's valid split its accuracy and its agreement with the
float model (share of identical predictions). The variants:

- ``int8``: every 2-D weight of the backbone (embedding and linear layers) stored as int8 with a
  float32 scale per row (``quantize_rows``: ~4x smaller on disk); at load time the decoder's
  linear layers run as PyTorch dynamic int8 ``nn.Linear`` (``quantization: int8-dynamic`` in
  classifier.json), on the CPU.
- ``pruned``: magnitude pruning: in each decoder weight matrix the ``prune_sparsity`` share of
  entries with the smallest |w| is set to 0 (no retraining; stored dense, so the file is not
  smaller: the gain is only for sparse kernels / compression of the file).
- ``distilled``: a student with ``distill_layers`` transformer layers, initialised from evenly
  spaced teacher layers (plus the teacher's embeddings, final norm and head), trained on train
  reviews to match the teacher's softened probabilities (temperature T, loss weight alpha) and
  the true labels (1 - alpha).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from components.common.io import atomic_output_dir
from components.common.metrics import write_metrics
from components.compress.params import Params
from llm.classifier import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    Classifier,
    ClassifierConfig,
    TextClassifier,
    build_classifier,
    load_weights,
    quantize_dynamic_int8,
    quantize_rows,
    save_classifier,
    tensor_state,
)
from llm.task_data import encode_texts, length_bucketed_batches, load_task, pad_batch

log = logging.getLogger(__name__)


def folder_bytes(directory: str | Path) -> int:
    """Bytes of the files directly in ``directory`` (a model folder's size on disk)."""
    return sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())


def int8_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every 2-D float matrix of the backbone replaced by int8 + ``.int8_scale``
    (see ``llm.classifier.quantize_rows``). The head, biases and norms stay float."""
    from llm.classifier import INT8_SCALE_SUFFIX

    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone.") and value.dim() == 2 and value.is_floating_point():
            q, scale = quantize_rows(value)
            out[key], out[key + INT8_SCALE_SUFFIX] = q, scale
        else:
            out[key] = value
    return out


def magnitude_prune_(weight: torch.Tensor, sparsity: float) -> int:
    """Zero the ``round(sparsity * numel)`` entries of ``weight`` with the smallest |value| (ties by
    position, so the result is deterministic), in place. Returns how many were zeroed."""
    k = int(round(sparsity * weight.numel()))
    if k <= 0:
        return 0
    flat = weight.detach().view(-1)
    order = torch.argsort(flat.abs(), stable=True)
    flat[order[:k]] = 0.0
    return k


def prune_decoder_(model: Classifier, sparsity: float) -> dict[str, int]:
    """Magnitude-prune every 2-D weight of the decoder (attention and MLP matrices) in place."""
    zeroed, total = 0, 0
    with torch.no_grad():
        for name, param in model.backbone.decoder.named_parameters():
            if param.dim() == 2 and name.endswith("weight"):
                zeroed += magnitude_prune_(param, sparsity)
                total += param.numel()
    return {"pruned_weights": zeroed, "prunable_weights": total}


def student_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer copied into each student layer: evenly spaced, first and last included
    (4 -> 2: [0, 3]; 6 -> 3: [0, 2, 5]); ``student_layers`` must not exceed ``teacher_layers``."""
    if not 0 < student_layers <= teacher_layers:
        raise ValueError(f"compress.distill_layers: {student_layers} must be within 1..{teacher_layers}")
    if student_layers == 1:
        return [teacher_layers - 1]
    return [round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)]


def student_state(teacher: dict[str, torch.Tensor], layer_map: list[int]) -> dict[str, torch.Tensor]:
    """The student's initial tensors: non-layer tensors as the teacher's, and student layer i's
    from teacher layer ``layer_map[i]`` (megatron names ``backbone.decoder.layers.<i>.*``)."""
    prefix = "backbone.decoder.layers."
    out = {k: v for k, v in teacher.items() if not k.startswith(prefix)}
    for i, j in enumerate(layer_map):
        source = f"{prefix}{j}."
        out.update({f"{prefix}{i}.{k[len(source) :]}": v for k, v in teacher.items() if k.startswith(source)})
    return out


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels) (Hinton et al.;
    the T^2 keeps the soft-target gradients on the scale of the hard-label ones)."""
    t = temperature
    soft = torch.nn.functional.kl_div(
        torch.log_softmax(student_logits / t, dim=-1),
        torch.softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
    )
    hard = torch.nn.functional.cross_entropy(student_logits, labels)
    return alpha * t * t * soft + (1 - alpha) * hard


@torch.no_grad()
def _logits(model: Classifier, sequences: list[list[int]], pad_id: int, batch_size: int) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, len(sequences), batch_size):
        ids, lengths = pad_batch(sequences[start : start + batch_size], pad_id)
        out.append(model(ids, lengths).float())
    return torch.cat(out)


def distill(
    teacher: Classifier, sequences: list[list[int]], labels: list[int], params: Params
) -> tuple[Classifier, list[float]]:
    """Train a ``distill_layers`` student of ``teacher`` on ``sequences``; returns it and the mean
    loss per epoch. Needs the megatron runtime (the student is a megatron GPT)."""
    config = teacher.config
    layer_map = student_layer_map(config.gpt.num_layers, params.distill_layers)
    student_config = dataclasses.replace(
        config, gpt=dataclasses.replace(config.gpt, num_layers=params.distill_layers), variant="distilled"
    )
    student = build_classifier(student_config)
    load_state = student_state(tensor_state(teacher), layer_map)
    student.load_state_dict(load_state, strict=False)
    targets = _logits(teacher, sequences, config.pad_id, params.eval_batch_size)
    y = torch.tensor(labels, dtype=torch.long)
    optimizer = torch.optim.AdamW(student.parameters(), lr=params.distill_lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(params.seed)
    lengths = [len(s) for s in sequences]
    history = []
    for _ in range(params.distill_epochs):
        student.train()
        total, count = 0.0, 0
        for batch in length_bucketed_batches(lengths, params.distill_batch_size, generator):
            ids, lens = pad_batch([sequences[i] for i in batch], config.pad_id)
            loss = distillation_loss(
                student(ids, lens), targets[batch], y[batch], params.distill_temperature, params.distill_alpha
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            total += loss.item() * len(batch)
            count += len(batch)
        history.append(total / count)
    return student.eval(), history


def _score(model: Classifier, tokenizer: Any, texts: list[str], batch_size: int) -> list[str]:
    return TextClassifier(model, tokenizer).predict(texts, batch_size)[0]


def run(finetuned: str, tokenized: str, task: str, output: str, params: Params) -> dict[str, Any]:
    """Build the variants of the classifier in ``finetuned``; see the module doc."""
    from llm.gpt import megatron_runtime
    from llm.tokenizer import load_tokenizer

    started = time.monotonic()
    if params.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(params.cpu_threads)
    model_dir = Path(finetuned)
    tokenizer_file = model_dir / TOKENIZER_FILE
    if not tokenizer_file.exists():  # an older finetune folder: take the tokenize stage's copy
        tokenizer_file = Path(tokenized) / TOKENIZER_FILE if Path(tokenized).is_dir() else Path(tokenized)
    tok = load_tokenizer(tokenizer_file)
    config = ClassifierConfig.from_json(model_dir / CONFIG_FILE)
    if config.variant or config.quantization:
        raise ValueError(
            f"compress: {finetuned} is already a compressed variant ({config.variant or config.quantization})"
        )
    splits = load_task(task, config.labels)
    valid = splits["valid"]
    if not valid:
        raise ValueError(f"compress: {task} has no valid examples")
    valid_texts = [e.text for e in valid]
    valid_y = [config.labels[e.label] for e in valid]
    metrics: dict[str, Any] = {"variants": {}}

    def describe(
        name: str, folder: Path, predicted: list[str], reference: list[str], extra: dict[str, Any]
    ) -> None:
        entry = {
            "size_bytes": folder_bytes(folder),
            "valid_accuracy": sum(p == a for p, a in zip(predicted, valid_y, strict=True)) / len(valid_y),
            "agreement_with_float": sum(p == r for p, r in zip(predicted, reference, strict=True))
            / len(reference),
            **extra,
        }
        write_metrics(folder, entry)
        metrics["variants"][name] = entry
        log.info("compress: %s %s", name, entry)

    with megatron_runtime(seed=params.seed), atomic_output_dir(output) as out:
        teacher = build_classifier(config)
        load_weights(teacher, model_dir / WEIGHTS_FILE)
        teacher.eval()
        state = tensor_state(teacher)
        n_params = sum(p.numel() for p in teacher.parameters())
        reference = _score(teacher, tok, valid_texts, params.eval_batch_size)
        metrics["float"] = {
            "size_bytes": (model_dir / WEIGHTS_FILE).stat().st_size
            + (model_dir / CONFIG_FILE).stat().st_size
            + tokenizer_file.stat().st_size,
            "parameters": n_params,
            "valid_accuracy": sum(p == a for p, a in zip(reference, valid_y, strict=True)) / len(valid_y),
        }

        def save(name: str, cfg: ClassifierConfig, tensors: dict[str, torch.Tensor]) -> Path:
            from safetensors.torch import save_file

            folder = out / name
            folder.mkdir()
            cfg.to_json(folder / CONFIG_FILE)
            save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(folder / WEIGHTS_FILE))
            (folder / WEIGHTS_FILE).chmod(0o644)
            shutil.copyfile(tokenizer_file, folder / TOKENIZER_FILE)
            return folder

        for name in params.variants:
            if name == "int8":
                cfg = dataclasses.replace(config, variant="int8", quantization="int8-dynamic")
                folder = save(name, cfg, int8_state(state))
                loaded = build_classifier(cfg)
                load_weights(loaded, folder / WEIGHTS_FILE)
                predicted = _score(quantize_dynamic_int8(loaded), tok, valid_texts, params.eval_batch_size)
                describe(name, folder, predicted, reference, {"parameters": n_params})
            elif name == "pruned":
                pruned = build_classifier(config)
                pruned.load_state_dict(state, strict=False)
                counts = prune_decoder_(pruned, params.prune_sparsity)
                folder = save(name, dataclasses.replace(config, variant="pruned"), tensor_state(pruned))
                predicted = _score(pruned.eval(), tok, valid_texts, params.eval_batch_size)
                describe(name, folder, predicted, reference, {"parameters": n_params, **counts})
            elif name == "distilled":
                train = splits["train"]
                if params.distill_max_examples and len(train) > params.distill_max_examples:
                    # A seeded random subset (the train split is in file order).
                    g = torch.Generator().manual_seed(params.seed)
                    keep = sorted(
                        torch.randperm(len(train), generator=g)[: params.distill_max_examples].tolist()
                    )
                    train = [train[i] for i in keep]
                seqs = encode_texts(tok, [e.text for e in train], config.max_length, config.eod_id)
                torch.manual_seed(params.seed)
                student, history = distill(teacher, seqs, [e.label for e in train], params)
                save_classifier(student, out / name)
                shutil.copyfile(tokenizer_file, out / name / TOKENIZER_FILE)
                predicted = _score(student, tok, valid_texts, params.eval_batch_size)
                describe(
                    name,
                    out / name,
                    predicted,
                    reference,
                    {
                        "parameters": sum(p.numel() for p in student.parameters()),
                        "distill_examples": len(train),
                        "distill_loss": [round(x, 6) for x in history],
                    },
                )
        metrics = write_metrics(out, metrics)
    log.info("compress: %s in %.1fs", ", ".join(params.variants), time.monotonic() - started)
    return metrics
