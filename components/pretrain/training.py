"""The training job that runs on every rank: model, megatron DDP + optimizer, steps, checkpoints.

``train_job`` is called once per process (one process, or every rank under torchrun) after
``init_runtime``. It builds the GPT for this rank's tensor/pipeline shard, wraps it in megatron's
``DistributedDataParallel`` (gradient buffers; all-reduce over data-parallel ranks; the tied
embedding's gradient shared between the first and last pipeline stage) and megatron's optimizer
(AdamW; fp32 master weights in bf16; the distributed optimizer on request; gradient clipping by
the global norm), resumes from the latest checkpoint of the run if there is one, and trains.

Steps go through megatron's ``get_forward_backward_func``: no pipelining at PP = 1 (it
accumulates the micro batches, each loss divided by their number), the 1F1B schedule at PP > 1.
The learning rate is a pure function of the step (``lr_at``), so it needs no saved state.

Reported losses are the mean over every micro batch of the step, all ranks together: the same
number on every rank, whatever the layout.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

from components.common import artifacts
from components.common.metrics import write_csv, write_metrics
from components.common.progress import Progress
from components.pretrain import accounting, checkpointing
from components.pretrain.data import build_datasets, collate, eval_sample_ids, step_sample_ids
from components.pretrain.params import Params
from components.pretrain.schedule import checkpoint_steps, eval_steps, lr_at
from llm.gpt import CHECKPOINT_DIR, MODEL_FILE, GPTShape

log = logging.getLogger(__name__)

LOSS_FILE = artifacts.LOSS
LOSS_FIELDS = ["step", "train_loss", "valid_loss"]
STEPS_FILE = artifacts.STEPS
STEPS_FIELDS = ["step", "train_loss", "grad_norm", "lr"]


def _forward_step(data_iterator, model):
    """megatron forward_step_func: per-token losses and the loss function reducing them."""
    from llm.gpt import token_losses

    device = next(model.parameters()).device
    batch = {key: value.to(device, non_blocking=True) for key, value in next(data_iterator).items()}
    losses = token_losses(model, batch["tokens"], batch["labels"])
    return losses, partial(_loss_func, batch["loss_mask"])


def _loss_func(loss_mask, losses):
    loss = (losses.float() * loss_mask).sum() / loss_mask.sum().clamp(min=1)
    # A copy: the schedule divides the returned loss in place by the number of micro batches.
    return loss, {"lm_loss": loss.detach().clone()}


class Trainer:
    """This rank's model shard, its DDP wrapper and the optimizer; steps and checkpoints."""

    def __init__(self, shape: GPTShape, params: Params, transformer_impl: str) -> None:
        import torch
        from megatron.core import parallel_state
        from megatron.core.distributed import (
            DistributedDataParallel,
            DistributedDataParallelConfig,
            finalize_model_grads,
        )
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

        from llm.gpt import build_gpt

        self.params = params
        self.shape = shape
        cuda = torch.cuda.is_available()
        bf16 = params.precision == "bf16"
        self.gpt = build_gpt(
            shape, precision=params.precision, recompute=params.recompute, transformer_impl=transformer_impl
        )
        config = self.gpt.config
        dp = parallel_state.get_data_parallel_world_size()
        overlap = cuda and dp > 1  # overlap the gradient all-reduce with backward (NCCL streams)
        self.model = DistributedDataParallel(
            config,
            DistributedDataParallelConfig(
                grad_reduce_in_fp32=bf16,
                overlap_grad_reduce=overlap,
                use_distributed_optimizer=params.use_distributed_optimizer,
            ),
            self.gpt,
        )
        config.no_sync_func = self.model.no_sync
        if overlap:
            config.grad_sync_func = self.model.start_grad_sync
        # After backward: finish the DP all-reduce and sum the tied embedding's gradient over
        # the first and last pipeline stage.
        config.finalize_model_grads_func = finalize_model_grads
        self.optimizer = get_megatron_optimizer(
            OptimizerConfig(
                optimizer="adam",
                lr=params.lr,
                min_lr=params.min_lr,
                weight_decay=params.weight_decay,
                adam_beta1=params.adam_beta1,
                adam_beta2=params.adam_beta2,
                adam_eps=params.adam_eps,
                clip_grad=params.grad_clip,
                bf16=bf16,
                params_dtype=torch.bfloat16 if bf16 else torch.float32,
                use_distributed_optimizer=params.use_distributed_optimizer,
            ),
            [self.model],
        )
        self.device = next(self.gpt.parameters()).device
        self.rank = torch.distributed.get_rank()
        self.dp_rank = parallel_state.get_data_parallel_rank()
        self.layout = {
            "tp": parallel_state.get_tensor_model_parallel_world_size(),
            "pp": parallel_state.get_pipeline_model_parallel_world_size(),
            "dp": dp,
        }
        # Ranks whose micro-batch losses count: the last pipeline stage, one per TP group.
        self._reports_loss = (
            parallel_state.is_pipeline_last_stage() and parallel_state.get_tensor_model_parallel_rank() == 0
        )

    def parameters(self) -> int:
        """Parameters of the whole model (all shards)."""
        import torch
        from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

        # Count each TP-sharded tensor on every TP rank, replicated ones on TP rank 0 only; the
        # tied output layer on the last stage is the embedding again (counted once).
        local = sum(
            p.numel()
            for name, p in self.gpt.named_parameters()
            if param_is_not_tensor_parallel_duplicate(p)
            and not (name == "output_layer.weight" and self.shape.tie_embeddings)
        )
        count = torch.tensor([float(local if self.dp_rank == 0 else 0)], device=self.device)
        torch.distributed.all_reduce(count)
        return int(count.item())

    def _run(self, batches: list[dict[str, Any]], forward_only: bool) -> float:
        """Forward (and backward) over this rank's micro batches; the mean loss over all ranks."""
        import torch
        from megatron.core.pipeline_parallel import get_forward_backward_func

        results = []
        if batches:
            b, t = batches[0]["tokens"].shape
            results = get_forward_backward_func()(
                forward_step_func=_forward_step,
                data_iterator=iter(batches),
                model=[self.model],
                num_microbatches=len(batches),
                seq_length=t,
                micro_batch_size=b,
                forward_only=forward_only,
            )
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        if self._reports_loss and results:
            total[0] = sum(float(r["lm_loss"]) for r in results)
            total[1] = len(results)
        torch.distributed.all_reduce(total)
        return float(total[0] / total[1])

    def train_step(self, step: int, batches: list[dict[str, Any]]) -> tuple[float, float, bool]:
        """One optimizer step at the step's learning rate: (mean loss, gradient norm, applied)."""
        lr = lr_at(step, self.params)
        for group in self.optimizer.param_groups:
            # megatron's param groups carry multipliers (no weight decay on biases and norms).
            group["lr"] = lr * group.get("lr_mult", 1.0)
            group["weight_decay"] = self.params.weight_decay * group.get("wd_mult", 1.0)
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        loss = self._run(batches, forward_only=False)
        applied, grad_norm, _zeros = self.optimizer.step()
        return loss, float(grad_norm) if grad_norm is not None else float("nan"), bool(applied)

    def evaluate(self, batches: list[dict[str, Any]]) -> float:
        """Mean validation loss (nats/token) over every rank's batches, without gradients."""
        import torch

        self.model.eval()
        with torch.no_grad():
            loss = self._run(batches, forward_only=True)
        self.model.train()
        return loss

    # ------------------------------------------------------------ checkpoints

    def _state(self, is_loading: bool, with_rng: bool) -> dict[str, Any]:
        model_state = self.gpt.sharded_state_dict()
        state = {
            "model": model_state,
            # The distributed optimizer's default format in megatron-core 0.16 (flattened
            # model-space shards) is refused by its own checkpointing; dp_reshardable is what
            # Megatron-LM saves by default (resumable at another data-parallel size). The plain
            # optimizer ignores the key.
            "optimizer": self.optimizer.sharded_state_dict(
                model_state, is_loading, metadata={"distrib_optim_sharding_type": "dp_reshardable"}
            ),
        }
        if with_rng:
            state["rng_state"] = _rng_sharded_object(self.layout)
        return state

    def save(self, run_dir: Path, state: checkpointing.TrainState) -> None:
        """Write a resumable checkpoint of ``state.step`` atomically (all ranks call this)."""
        import torch
        from megatron.core import dist_checkpointing

        from llm.gpt.model import use_in_process_write_queue

        use_in_process_write_queue()
        partial_dir = checkpointing.begin(run_dir, state.step) if self.rank == 0 else None
        partial_dir = _broadcast(partial_dir)
        dist_checkpointing.save(self._state(is_loading=False, with_rng=True), str(partial_dir))
        if self.rank == 0:
            checkpointing.write_state(partial_dir, state)
        torch.distributed.barrier()
        if self.rank == 0:
            checkpointing.commit(
                run_dir, state.step, self.params.keep_checkpoints, final=state.step == self.params.train_steps
            )
        torch.distributed.barrier()

    def load(self, step_dir: Path) -> checkpointing.TrainState:
        """Restore model, optimizer (and RNG streams when the layout is unchanged) from
        ``step_dir``; return its training state."""
        from megatron.core import dist_checkpointing

        state = checkpointing.read_state(step_dir)
        same_layout = state.layout == self.layout
        if self.params.use_distributed_optimizer:
            self._allocate_distributed_optimizer_state()
        loaded = dist_checkpointing.load(self._state(is_loading=True, with_rng=same_layout), str(step_dir))
        self.gpt.load_state_dict(loaded["model"], strict=True)
        self.optimizer.load_state_dict(loaded["optimizer"])
        if same_layout:
            _set_rng(loaded["rng_state"])
        return state

    def _allocate_distributed_optimizer_state(self) -> None:
        """Give a fresh distributed optimizer its Adam state before a load.

        Its sharded state dict reads the per-tensor Adam ``step`` when neither Apex nor Transformer
        Engine provides the fused Adam (megatron-core 0.16), and a fresh torch AdamW has none yet.
        megatron's own remedy (used for its FSDP checkpoints): one step on zero gradients, whose
        state and fp32 master weights the load then overwrites.
        """
        for optimizer in getattr(self.optimizer, "chained_optimizers", [self.optimizer]):
            if not optimizer.optimizer.state:
                optimizer._init_optimizer_states_with_dummy_values()


def _broadcast(value: Any) -> Any:
    """``value`` from global rank 0, on every rank."""
    import torch

    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _rng_sharded_object(layout: dict[str, int]):
    """This rank's RNG streams (CPU, CUDA, megatron's tracker) as a dist_checkpointing object,
    one per (pp, tp, dp) rank, as Megatron-LM saves them."""
    import torch
    from megatron.core import parallel_state, tensor_parallel
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    rng = {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    return ShardedObject(
        "rng_state",
        rng,
        (layout["pp"], layout["tp"], layout["dp"]),
        (
            parallel_state.get_pipeline_model_parallel_rank(),
            parallel_state.get_tensor_model_parallel_rank(),
            parallel_state.get_data_parallel_rank(),
        ),
        replica_id=0,
    )


def _set_rng(rng: dict[str, Any]) -> None:
    import torch
    from megatron.core import tensor_parallel

    torch.set_rng_state(rng["cpu"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(rng["tracker"])


# ---------------------------------------------------------------- the job


def _eval_row(state: checkpointing.TrainState, step: int, valid: float) -> dict[str, float]:
    """A loss.csv row: the mean training loss of the steps since the previous row."""
    since = state.evals[-1]["step"] if state.evals else 0
    window = [r["train_loss"] for r in state.steps if since < r["step"] <= step]
    return {"step": step, "train_loss": sum(window) / len(window), "valid_loss": valid}


def train_job(
    data: str | Path,
    stage_dir: Path,
    run_dir: Path,
    params: Params,
    shape: GPTShape,
    vocab_size: int,
    eod: int,
    transformer_impl: str,
    started: float,
) -> dict[str, Any]:
    """Train on this rank (resuming from ``run_dir``'s latest checkpoint), then write the stage
    outputs into ``stage_dir`` (weights from every rank; model.json, loss.csv, steps.csv and
    metrics.json from rank 0). Returns the metrics (on every rank)."""
    import torch

    train_data, valid_data = build_datasets(
        data, params, vocab_size, eod, run_dir / checkpointing.DATASET_CACHE
    )
    trainer = Trainer(shape, params, transformer_impl)
    n_params = trainer.parameters()
    valid_batches = [collate(valid_data, ids) for ids in eval_sample_ids(params, trainer.dp_rank)]

    latest = checkpointing.latest_checkpoint(run_dir) if trainer.rank == 0 else None
    latest = _broadcast(latest)
    if latest is not None:
        state = trainer.load(latest)
        log.info("pretrain: resumed from %s (step %d)", latest, state.step)
    else:
        state = checkpointing.TrainState(layout=trainer.layout)
        state.initial_valid_loss = trainer.evaluate(valid_batches)
        log.info("pretrain: step 0 valid_loss %.4f", state.initial_valid_loss)
    resumed_from = state.step
    state.layout = trainer.layout
    log.info(
        "pretrain: %d parameters, vocab %d (padded %d), %d train samples, layout tp=%d pp=%d dp=%d",
        n_params,
        vocab_size,
        shape.vocab_size,
        len(train_data),
        trainer.layout["tp"],
        trainer.layout["pp"],
        trainer.layout["dp"],
    )

    evals, saves = set(eval_steps(params)), set(checkpoint_steps(params))
    earlier_runs = list(state.run_seconds)  # the runs this one resumes (s each)
    with Progress("pretrain", total=params.train_steps - state.step, unit="steps") as progress:
        for step in range(state.step + 1, params.train_steps + 1):
            t0 = time.perf_counter()
            batches = [collate(train_data, ids) for ids in step_sample_ids(step, params, trainer.dp_rank)]
            loss, grad_norm, applied = trainer.train_step(step, batches)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            state.train_seconds += time.perf_counter() - t0
            if not math.isfinite(loss):
                raise FloatingPointError(f"pretrain: training loss is {loss} at step {step}")
            state.skipped_steps += 0 if applied else 1
            state.step = step
            state.steps.append(
                {"step": step, "train_loss": loss, "grad_norm": grad_norm, "lr": lr_at(step, params)}
            )
            progress.update(1, loss=loss, lr=lr_at(step, params))
            if step in evals:
                state.evals.append(_eval_row(state, step, trainer.evaluate(valid_batches)))
                log.info(
                    "pretrain: step %d train_loss %.4f valid_loss %.4f",
                    step,
                    state.evals[-1]["train_loss"],
                    state.evals[-1]["valid_loss"],
                )
            if step in saves:
                state.run_seconds = [*earlier_runs, time.perf_counter() - started]
                state.wall_seconds = sum(state.run_seconds)
                trainer.save(run_dir, state)

    # The stage output: weights only (fp32), readable by load_pretrained at any layout.
    from llm.gpt import save_checkpoint

    save_checkpoint(trainer.gpt, stage_dir / CHECKPOINT_DIR)
    this_run = time.perf_counter() - started
    on_gpu = trainer.device.type == "cuda"
    metrics = _metrics(
        params, shape, state, n_params, vocab_size, resumed_from, earlier_runs, this_run, on_gpu
    )
    if trainer.rank == 0:
        shape.to_json(stage_dir / MODEL_FILE)
        write_csv(stage_dir / LOSS_FILE, state.evals, LOSS_FIELDS)
        write_csv(stage_dir / STEPS_FILE, state.steps, STEPS_FIELDS)
        metrics = write_metrics(stage_dir, metrics)
    torch.distributed.barrier()
    return metrics


def _metrics(
    params: Params,
    shape: GPTShape,
    state: checkpointing.TrainState,
    n_params: int,
    vocab_size: int,
    resumed_from: int,
    earlier_runs: list[float],
    this_run: float,
    on_gpu: bool,
) -> dict[str, Any]:
    """metrics.json. Time only, no prices (see ``components.pretrain.accounting``).

    ``earlier_runs``: wall seconds of each run this one resumed, up to its last checkpoint;
    ``this_run``: wall seconds of this run. ``seconds`` and ``accelerator_hours`` cover all of
    them (what the training held); ``seconds_this_run`` and ``accelerator_hours_this_run`` this
    run only; ``runs`` counts them. Accelerator-hours count one GPU per rank on GPU, the
    machines (``num_nodes``) on CPU (``held_devices``, ``held_device_kind``). MFU divides by
    ``accelerators`` (ranks) x ``peak_flops_per_accelerator``, whose origin is
    ``peak_flops_source``.
    """
    final = state.evals[-1]
    tokens = state.step * params.global_batch_size * params.model.seq_length
    tokens_per_s = tokens / max(state.train_seconds, 1e-9)
    flops_per_token = accounting.model_flops_per_token(shape)
    devices = params.world_size
    peak, peak_source = accounting.peak_flops(params.peak_flops_per_accelerator, on_gpu)
    held, held_kind = accounting.held_devices(devices, params.num_nodes, on_gpu)
    seconds = sum(earlier_runs) + this_run
    return {
        "train_loss": final["train_loss"],
        "valid_loss": final["valid_loss"],
        "valid_perplexity": math.exp(final["valid_loss"]),
        "initial_valid_loss": state.initial_valid_loss,
        "steps": state.step,
        "resumed_from_step": resumed_from,
        "skipped_steps": state.skipped_steps,
        "tokens": tokens,
        "tokens_per_s": tokens_per_s,
        "train_seconds": state.train_seconds,
        "model_flops_per_token": flops_per_token,
        "model_flops_per_s": tokens_per_s * flops_per_token,
        "mfu": accounting.mfu(tokens_per_s, flops_per_token, peak, devices),
        "peak_flops_per_accelerator": peak,
        "peak_flops_source": peak_source,
        "accelerators": devices,
        "held_devices": held,
        "held_device_kind": held_kind,
        "accelerator_hours": accounting.accelerator_hours(seconds, held),
        "accelerator_hours_this_run": accounting.accelerator_hours(this_run, held),
        "parameters": n_params,
        "vocab_size": vocab_size,
        "runs": len(earlier_runs) + 1,
        "seconds": seconds,
        "seconds_this_run": this_run,
    }


@contextlib.contextmanager
def cpu_threads(n: int):
    """torch intra-op threads fixed to ``n`` inside the block (reproducible CPU sums)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
