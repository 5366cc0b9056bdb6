"""pretrain: train a megatron-core GPT on the tokenize stage's indexed datasets.

Contract: ``run(data, output, params, checkpoint_dir=None)`` reads ``data/tokenizer.json``
(vocabulary size, the ``<|endoftext|>`` id) and the indexed datasets named by
``params.data.sources`` (by default the tokenize stage's ``{train,valid}_text_document``), trains
a ``GPTModel`` and writes into ``output`` (atomically):

- ``model.json``: the ``GPTShape`` (vocabulary padded up to ``make_vocab_size_divisible_by * tp``);
- ``checkpoint/``: megatron ``dist_checkpointing`` weights in fp32, loadable at any TP/PP layout
  (``llm.gpt.load_pretrained``);
- ``loss.csv``: DVC plot, one row per evaluation: ``step`` (optimizer steps), ``train_loss`` (mean
  training loss in nats/token over the steps since the previous row), ``valid_loss`` (nats/token);
- ``steps.csv``: DVC plot, one row per optimizer step: ``train_loss``, ``grad_norm``, ``lr``;
- ``metrics.json``: final losses and perplexity, ``tokens_per_s``, ``model_flops_per_s``, ``mfu``
  (against ``peak_flops_per_accelerator``, named with its ``peak_flops_source``), ``parameters``,
  ``steps``, ``resumed_from_step``; time, never dollars (the continuous monitor prices it with
  ``monitoring.prices``): ``seconds`` and ``accelerator_hours`` summed over every run of this
  training (a resumed run adds the runs it resumed), ``seconds_this_run``,
  ``accelerator_hours_this_run``, ``runs``, ``held_devices`` and ``held_device_kind`` (GPUs, or
  CPU machines), ...

Processes: one process in this one when ``tp * pp * dp == 1``; otherwise torchrun is launched
here (``components.pretrain.launch``), or, when this process already runs under torchrun (a
PyTorchJob), every rank runs the job and global rank 0 publishes the output.

Checkpoints: resumable checkpoints (model, optimizer, RNG, progress) go to ``checkpoint_dir``
(default ``<output>.checkpoints``; a PVC on Kubernetes) every ``checkpoint_interval`` steps and at
the end; a rerun with the same params and data resumes from the latest one automatically and
continues bit-identically on CPU (see ``components.pretrain.checkpointing``).

Determinism: seeded weights, data order and dropout, fixed CPU threads: the same data + params
give the same losses, bit for bit, whether the run was interrupted or not.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from components.common.io import atomic_output_dir, read_json
from components.common.metrics import METRICS_FILE
from components.pretrain import checkpointing
from components.pretrain.data import build_datasets, micro_batches, source_files
from components.pretrain.params import Params
from components.pretrain.schedule import checkpoint_steps, eval_steps, lr_at, padded_vocab_size
from components.pretrain.shape import gpt_shape, tokenizer_info
from llm.formats import TOKENIZER_FILE

log = logging.getLogger(__name__)

STAGE_DIR = "stage"

__all__ = [
    "build_datasets",
    "checkpoint_steps",
    "eval_steps",
    "evaluate",
    "gpt_shape",
    "lr_at",
    "micro_batches",
    "padded_vocab_size",
    "run",
    "tokenizer_info",
]


def evaluate(model, batches: list[dict[str, Any]]) -> float:
    """Mean loss (nats/token) of a single-process ``model`` over ``batches`` (micro batches as
    from ``micro_batches``), in eval mode, without gradients."""
    import torch

    from llm.gpt import token_losses

    was_training = model.training
    model.eval()
    with torch.no_grad():
        losses = [
            float(
                (token_losses(model, b["tokens"], b["labels"]) * b["loss_mask"]).sum() / b["loss_mask"].sum()
            )
            for b in batches
        ]
    model.train(was_training)
    return sum(losses) / len(losses)


def _publish(stage: Path, output: str) -> None:
    """Move the staged outputs into ``output`` in one atomic replacement."""
    with atomic_output_dir(output) as out:
        for item in sorted(stage.iterdir()):
            shutil.move(str(item), str(out / item.name))
    shutil.rmtree(stage, ignore_errors=True)


def prepare_process() -> None:
    """Run by the stage entry on both doors before ``run``: dist_checkpointing and torchrun fork
    helper processes, which must die with this one (``launch.forked_children_die_with_this_process``)."""
    from components.pretrain.launch import forked_children_die_with_this_process

    forked_children_die_with_this_process()


def run(tokenized: str, output: str, params: Params, checkpoint_dir: str | None = None) -> dict[str, Any]:
    """Pretrain on ``tokenized`` (a tokenize output folder); write ``output``; return the metrics.

    ``checkpoint_dir``: root of the resumable checkpoints (default ``<output>.checkpoints``).
    Raises ``ParamsError`` (naming the key) before launching anything this machine cannot run.
    """
    from components.pretrain import launch

    started, started_at = time.perf_counter(), time.time()
    machine = launch.Machine.detect()
    launcher_world = launch.launcher_world_size()
    launch.check_machine(params, machine, launcher_world)
    impl = launch.resolve_transformer_impl(params, machine)

    vocab_size, _eod = tokenizer_info(tokenized)
    shape = gpt_shape(params, vocab_size)
    files = [Path(tokenized) / TOKENIZER_FILE, *source_files(tokenized, params)]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise FileNotFoundError(f"pretrain: missing input files {missing[:4]} (see pretrain.data.sources)")
    run_id, covered = checkpointing.fingerprint(dataclasses.asdict(params), shape.to_dict(), files)
    root = Path(checkpoint_dir) if checkpoint_dir else checkpointing.default_root(output)
    run_dir = checkpointing.prepare_run_dir(root, run_id, covered)
    stage = run_dir / STAGE_DIR
    log.info("pretrain: checkpoints in %s", run_dir)

    if launcher_world is not None or params.world_size == 1:
        metrics = launch.run_ranks(tokenized, stage, run_dir, params, impl, started)
        if launcher_world is not None and int(os.environ["RANK"]) != 0:
            return metrics  # global rank 0 publishes
    else:
        shutil.rmtree(stage, ignore_errors=True)
        args = launch.worker_args(tokenized, stage, run_dir, params, impl, started_at=started_at)
        launch.launch_torchrun(params, args)
        metrics = read_json(stage / METRICS_FILE)
    _publish(stage, output)
    log.info(
        "pretrain: valid_loss %.4f (perplexity %.1f), %.0f tokens/s, MFU %.1f%% of %.3g FLOP/s per "
        "device, peak from %s; %.1fs this run, %.1fs over %d run(s), %.4g accelerator-hours (%d %s)",
        metrics["valid_loss"],
        metrics["valid_perplexity"],
        metrics["tokens_per_s"],
        100 * metrics["mfu"],
        metrics["peak_flops_per_accelerator"],
        metrics["peak_flops_source"],
        metrics["seconds_this_run"],
        metrics["seconds"],
        metrics["runs"],
        metrics["accelerator_hours"],
        metrics["held_devices"],
        metrics["held_device_kind"],
    )
    return metrics
