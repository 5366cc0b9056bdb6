"""The GPT that pretrain trains and finetune / evaluate / the model server reuse.

One description of the model (``GPTShape``, written by pretrain as ``model.json``), one builder
(megatron-core ``GPTModel``: the local layer spec with a fused-attention core by default, which runs
on CPU and on GPUs without Transformer Engine; the Transformer Engine spec on request), one
checkpoint format (megatron ``dist_checkpointing``, which reshards between TP/PP layouts and between
the two layer specs), and batch-first helpers that hide megatron's sequence-first internals and the
causal mask.

Every function here needs the megatron runtime (``llm.gpt.runtime.init_runtime``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from llm.formats import CHECKPOINT_DIR, GPT_SHAPE_FILE
from llm.gpt.masks import causal_inputs

MODEL_FILE = GPT_SHAPE_FILE


@dataclass(frozen=True)
class GPTShape:
    """Everything needed to rebuild the network (not the tokenizer, not the training recipe)."""

    vocab_size: int  # embedding rows: the tokenizer's vocabulary padded up (tokens)
    seq_length: int  # longest input the model takes (tokens); learned position table size
    num_layers: int  # transformer layers
    hidden_size: int  # model width (features)
    num_attention_heads: int  # heads; hidden_size must be a multiple
    ffn_hidden_size: int  # MLP inner width (features), usually 4 * hidden_size
    position_embedding_type: Literal["learned_absolute", "rope"] = "learned_absolute"
    tie_embeddings: bool = True  # output layer shares the input embedding matrix
    normalization: Literal["LayerNorm", "RMSNorm"] = "LayerNorm"
    layernorm_epsilon: float = 1e-5
    add_bias_linear: bool = True  # biases in attention / MLP linear layers
    rotary_base: int = 10000  # RoPE base (only for position_embedding_type == "rope")
    init_method_std: float = 0.02  # std of the normal weight initialisation
    hidden_dropout: float = 0.0  # dropout probability after attention / MLP
    attention_dropout: float = 0.0  # dropout probability on attention weights

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_length", "num_layers", "hidden_size", "num_attention_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GPTShape.{name}: must be > 0, got {getattr(self, name)!r}")
        if self.ffn_hidden_size <= 0:
            raise ValueError(f"GPTShape.ffn_hidden_size: must be > 0, got {self.ffn_hidden_size!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"GPTShape.hidden_size: {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.position_embedding_type not in ("learned_absolute", "rope"):
            raise ValueError(
                f"GPTShape.position_embedding_type: expected learned_absolute or rope, "
                f"got {self.position_embedding_type!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the shape as sorted-key JSON (deterministic bytes)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> GPTShape:
        """Read a shape written by ``to_json``; unknown keys are an error (a newer writer)."""
        data = json.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown GPTShape keys {unknown}")
        return cls(**data)

    def num_parameters(self) -> int:
        """Parameter count of the full model (all TP/PP shards together)."""
        h, f, v, n = self.hidden_size, self.ffn_hidden_size, self.vocab_size, self.num_layers
        b = 1 if self.add_bias_linear else 0
        norm = 2 * h if self.normalization == "LayerNorm" else h
        layer = (4 * h * h + 4 * h * b) + (2 * h * f + (f + h) * b) + 2 * norm
        emb = v * h + (self.seq_length * h if self.position_embedding_type == "learned_absolute" else 0)
        out = 0 if self.tie_embeddings else v * h
        return emb + n * layer + norm + out


Precision = Literal["fp32", "bf16"]
Recompute = Literal["none", "selective", "full"]
TransformerImpl = Literal["local", "transformer_engine"]


def transformer_engine_available() -> bool:
    """True when Transformer Engine can be used: CUDA present and ``transformer_engine`` installed."""
    return torch.cuda.is_available() and importlib.util.find_spec("transformer_engine") is not None


def _transformer_config(
    shape: GPTShape,
    precision: Precision = "fp32",
    recompute: Recompute = "none",
    transformer_impl: TransformerImpl = "local",
):
    """megatron TransformerConfig for ``shape`` in the current parallel layout.

    ``precision``: "fp32", or "bf16" (weights and activations in bf16; the megatron optimizer keeps
    fp32 master weights). ``recompute``: "selective" recomputes core attention in backward, "full"
    every layer (uniform, one layer per checkpoint); both trade compute for activation memory.
    """
    from megatron.core import parallel_state
    from megatron.core.transformer.transformer_config import TransformerConfig

    cuda = torch.cuda.is_available()
    te = transformer_impl == "transformer_engine"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    recompute_args: dict[str, Any] = {}
    if recompute == "selective":
        recompute_args = {"recompute_granularity": "selective"}
    elif recompute == "full":
        recompute_args = {
            "recompute_granularity": "full",
            "recompute_method": "uniform",
            "recompute_num_layers": 1,
        }
    return TransformerConfig(
        num_layers=shape.num_layers,
        hidden_size=shape.hidden_size,
        num_attention_heads=shape.num_attention_heads,
        ffn_hidden_size=shape.ffn_hidden_size,
        normalization=shape.normalization,
        layernorm_epsilon=shape.layernorm_epsilon,
        add_bias_linear=shape.add_bias_linear,
        init_method_std=shape.init_method_std,
        hidden_dropout=shape.hidden_dropout,
        attention_dropout=shape.attention_dropout,
        tensor_model_parallel_size=parallel_state.get_tensor_model_parallel_world_size(),
        pipeline_model_parallel_size=pp,
        # pipeline_dtype: the dtype of activations sent between stages (required when PP > 1).
        pipeline_dtype=dtype if pp > 1 else None,
        params_dtype=dtype,
        bf16=precision == "bf16",
        # CPU: build weights on the host (megatron otherwise allocates them on the GPU).
        use_cpu_initialization=not cuda,
        # The jit-fused bias+GeLU and bias+dropout+add kernels are for GPUs; the unfused paths
        # compute the same thing everywhere. megatron's masked-softmax kernel is never used:
        # attention goes through SDPAttention (local spec) or Transformer Engine.
        bias_activation_fusion=cuda and shape.add_bias_linear,
        bias_dropout_fusion=cuda,
        masked_softmax_fusion=False,
        # Fused RoPE comes with Transformer Engine. Fused weight-gradient accumulation into the
        # fp32 main grads: TE's layers have it, but megatron's own output layer (in the TE spec
        # too) needs apex's fused_weight_gradient_mlp_cuda and refuses to build without it.
        apply_rope_fusion=te,
        gradient_accumulation_fusion=te
        and importlib.util.find_spec("fused_weight_gradient_mlp_cuda") is not None,
        persist_layer_norm=False,
        **recompute_args,
    )


def layer_spec(shape: GPTShape, transformer_impl: TransformerImpl = "local"):
    """The transformer-layer spec: Transformer Engine's, or megatron's local one with the fused
    ``SDPAttention`` core. Both map to the same checkpoint keys."""
    from megatron.core.models.gpt import gpt_layer_specs

    if transformer_impl == "transformer_engine":
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()
    from llm.gpt.attention import SDPAttention

    spec = gpt_layer_specs.get_gpt_layer_local_spec(normalization=shape.normalization)
    spec.submodules.self_attention.submodules.core_attention = SDPAttention
    return spec


def build_gpt(
    shape: GPTShape,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    *,
    precision: Precision = "fp32",
    recompute: Recompute = "none",
    transformer_impl: TransformerImpl = "local",
):
    """A megatron-core ``GPTModel`` of ``shape``, in train mode (on the GPU when there is one).

    ``pre_process`` / ``post_process``: whether this pipeline stage holds the embedding / the
    output layer; None = from megatron's parallel state (both True for PP = 1). Weights are drawn
    from torch's seeded generators (on CPU the full matrix is drawn, then split), so the same seed
    given to ``init_runtime`` gives the same initial model at any tensor-parallel size.
    ``precision`` / ``recompute`` / ``transformer_impl``: see ``_transformer_config`` and
    ``layer_spec`` (bf16 and Transformer Engine need a GPU).
    """
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel

    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage()
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage()
    model = GPTModel(
        config=_transformer_config(shape, precision, recompute, transformer_impl),
        transformer_layer_spec=layer_spec(shape, transformer_impl),
        vocab_size=shape.vocab_size,
        max_sequence_length=shape.seq_length,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=shape.tie_embeddings,
        position_embedding_type=shape.position_embedding_type,
        rotary_base=shape.rotary_base,
    )
    if precision == "bf16":
        # What megatron's own training does with its Float16Module wrapper: cast every floating
        # parameter and buffer. Without it the modules megatron builds outside params_dtype (the
        # torch LayerNorm it falls back to without apex, the learned position embedding) stay
        # fp32, and the first bf16 linear layer gets a fp32 input. Inputs are token ids, so the
        # wrapper's input cast is not needed; losses are reduced in fp32 by the callers.
        model = model.bfloat16()
    if torch.cuda.is_available():
        model = model.cuda()
    return model


def fp32_sharded_state_dict(model) -> dict[str, Any]:
    """``model.sharded_state_dict()`` with every floating-point shard as fp32 (a copy for bf16
    weights), so a checkpoint of a bf16 model loads into the fp32 models of finetune/evaluate."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if (
            isinstance(value, ShardedTensor)
            and value.data.is_floating_point()
            and value.data.dtype != torch.float32
        ):
            value.data = value.data.float()
            value.dtype = torch.float32
        return value

    return convert(model.sharded_state_dict())


def use_in_process_write_queue() -> None:
    """Let ``dist_checkpointing.save`` report its write results through a plain ``queue.Queue``.

    megatron's writer (``strategies.filesystem_async``) creates its results queue on first use
    with a *spawn*-context ``multiprocessing.Manager``: a fresh interpreter that re-imports the
    main module (seconds per process, and the reason the entry point needs a ``__main__``
    guard). Our saves are synchronous (``AsyncRequest.execute_sync``): the queue is filled and
    read by this same process, so an in-process queue does the same job. Idempotent.
    """
    import queue

    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if getattr(filesystem_async, "_results_queue", False) is None:
        filesystem_async._results_queue = queue.Queue()


def save_checkpoint(model, directory: str | os.PathLike) -> None:
    """Save ``model``'s weights (as fp32) with megatron ``dist_checkpointing`` into ``directory``
    (created; it must be empty). All ranks of the job must call it."""
    from megatron.core import dist_checkpointing

    use_in_process_write_queue()
    Path(directory).mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save(fp32_sharded_state_dict(model), str(directory))
    drop_save_identity(directory)


def drop_save_identity(directory: str | os.PathLike) -> None:
    """Remove where and when a checkpoint was saved from its ``.metadata``, so equal weights give
    equal bytes (DVC hashes outputs by content; the parity test compares them).

    torch.distributed.checkpoint records a ``StorageMeta`` there: ``checkpoint_id`` (the folder's
    path on the saving machine) and ``save_id`` (a random uuid). Loading needs neither (the reader
    makes a fresh one when it is None). Only the writer of ``.metadata`` (global rank 0) rewrites it.
    """
    import pickle

    import torch.distributed as dist

    if dist.is_initialized() and dist.get_rank() != 0:
        return
    path = Path(directory) / ".metadata"
    if not path.exists():
        return
    with open(path, "rb") as f:
        metadata = pickle.load(f)
    metadata.storage_meta = None
    # The writer lists entries in the order the process happened to plan them (seen to differ
    # between a fresh process and one that had saved before): sort them so equal checkpoints give
    # equal bytes. Loading looks entries up by key; the order carries no meaning.
    for name in ("state_dict_metadata", "storage_data"):
        table = getattr(metadata, name, None)
        if isinstance(table, dict):
            setattr(metadata, name, dict(sorted(table.items(), key=lambda kv: repr(kv[0]))))
    tmp = path.with_name(".metadata.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(metadata, f)
    os.replace(tmp, path)


def load_checkpoint(model, directory: str | os.PathLike) -> None:
    """Load weights saved by ``save_checkpoint`` into ``model`` (any TP/PP layout: megatron
    reshards). Missing or unexpected keys are an error."""
    from megatron.core import dist_checkpointing

    state = dist_checkpointing.load(model.sharded_state_dict(), str(directory))
    model.load_state_dict(state, strict=True)


def load_pretrained(pretrain_dir: str | os.PathLike) -> tuple[Any, GPTShape]:
    """Rebuild the pretrained model from ``pretrain_dir/model.json`` + ``pretrain_dir/checkpoint``.

    Single process (TP = PP = 1); the caller has run ``init_runtime()``. Returns the model in
    eval mode and its shape.
    """
    shape = GPTShape.from_json(Path(pretrain_dir) / MODEL_FILE)
    model = build_gpt(shape)
    load_checkpoint(model, Path(pretrain_dir) / CHECKPOINT_DIR)
    model.eval()
    return model, shape


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token logits (B, T, V) for token ids (B, T) (V = this TP rank's vocabulary shard)."""
    positions, mask = causal_inputs(input_ids)
    return model(input_ids, positions, mask)


@contextlib.contextmanager
def _without_output_layer(model) -> Iterator[None]:
    # GPTModel.forward returns the decoder output (after the final layernorm, which belongs to
    # the decoder) when post_process is False; the decoder itself was built with its own flag.
    saved = model.post_process
    model.post_process = False
    try:
        yield
    finally:
        model.post_process = saved


def hidden_states(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Final-layernorm hidden states (B, T, H) for token ids (B, T): embedding -> decoder ->
    final layernorm, causal attention. Differentiable (for classification heads)."""
    positions, mask = causal_inputs(input_ids)
    with _without_output_layer(model):
        out = model(input_ids, positions, mask)  # (T, B, H): megatron is sequence-first
    return out.transpose(0, 1)


def token_losses(model, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy (B, T) in nats of predicting ``labels`` (B, T) at each position of
    ``input_ids`` (B, T). Labels are the inputs shifted left by one. Differentiable."""
    positions, mask = causal_inputs(input_ids)
    return model(input_ids, positions, mask, labels=labels)
