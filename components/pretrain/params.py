"""Params of the pretrain stage (stdlib only: imported by the params loader of every stage).

The defaults are the CPU demo (one process, fp32, about 3 min on 2 cores). Real hardware uses the
same keys with other values: see ``params/profiles/`` (GPT ~125M and ~1B on 8 GPUs, ~1B on 2x8),
applied to a params file with ``python -m components.pretrain.profile``.

Everything that can be checked without a device is checked here (sizes, divisibility, the
parallel layout); what depends on the machine (CUDA, Transformer Engine) is checked by
``components.pretrain.launch.check_machine`` before any process is started.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal

from components.common.params import check_accelerator, check_fraction, check_positive

SECTION = "pretrain"


@dataclass(frozen=True)
class ModelParams:
    """The GPT's shape (vocabulary size comes from the tokenizer)."""

    num_layers: int = 4  # transformer layers (count)
    hidden_size: int = 256  # model width (features)
    num_attention_heads: int = 4  # attention heads; must divide hidden_size (count)
    ffn_hidden_size: int = 1024  # MLP inner width (features)
    seq_length: int = 256  # training context length (tokens)
    position_embedding_type: Literal["learned_absolute", "rope"] = "learned_absolute"  # positions (name)
    tie_embeddings: bool = True  # output layer shares the input embedding matrix (flag)
    normalization: Literal["LayerNorm", "RMSNorm"] = "LayerNorm"  # normalization layer (name)
    init_method_std: float = 0.02  # std of the normal weight initialisation (weight units)
    hidden_dropout: float = 0.0  # dropout after attention and MLP (probability)
    attention_dropout: float = 0.0  # dropout on attention weights (probability)

    def __post_init__(self) -> None:
        section = f"{SECTION}.model"
        check_positive(
            section,
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            ffn_hidden_size=self.ffn_hidden_size,
            seq_length=self.seq_length,
            init_method_std=self.init_method_std,
        )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"{section}.num_attention_heads: must divide hidden_size {self.hidden_size}, "
                f"got {self.num_attention_heads}"
            )
        check_fraction(section, hidden_dropout=self.hidden_dropout, attention_dropout=self.attention_dropout)


@dataclass(frozen=True)
class SourceParams:
    """One tokenized source in the training blend."""

    name: str = "text"  # files <data>/<split>_<name>_document.{bin,idx} written by tokenize (name)
    weight: float = 1.0  # relative sampling weight in the blend; normalised over sources (weight)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"{SECTION}.data.sources.name: expected a file-name stem, got {self.name!r}")
        check_positive(f"{SECTION}.data.sources", weight=self.weight)


@dataclass(frozen=True)
class DataParams:
    """Which indexed datasets feed training and validation, and in which proportions."""

    sources: list[SourceParams] = field(default_factory=lambda: [SourceParams()])  # blended sources (list)
    # "" = the tokenize stage's own train/valid/test files; "a,b,c" = megatron's split of each
    # source's train file into train/valid/test documents by these ratios (parts).
    split: str = ""

    def __post_init__(self) -> None:
        section = f"{SECTION}.data"
        if not self.sources:
            raise ValueError(f"{section}.sources: need at least one source")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"{section}.sources: duplicate source names {names}")
        if self.split:
            parts = self.split.split(",")
            try:
                ratios = [float(p) for p in parts]
            except ValueError:
                ratios = []
            if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0 or ratios[1] <= 0:
                raise ValueError(
                    f'{section}.split: expected "" or three ratios "train,valid,test" with train and '
                    f"valid > 0, got {self.split!r}"
                )


# A Kubernetes resource quantity: a decimal number with an optional SI or binary suffix.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


@dataclass(frozen=True)
class JobParams:
    """The pods of the Kubeflow PyTorchJob that trains on ``num_nodes`` > 1 machines
    (``components.pretrain.pytorchjob``); the image, PVC and /dev/shm size come from the cluster
    settings (pipelines/cluster.yaml). Unused by ``dvc repro`` and by one-pod runs."""

    cpu_request: str = "4"  # CPU requested per pod (Kubernetes quantity: cores, e.g. "4" or "3500m")
    cpu_limit: str = ""  # CPU limit per pod; "" = no limit (Kubernetes quantity: cores)
    memory_request: str = "32Gi"  # memory requested per pod (Kubernetes quantity: bytes, e.g. "32Gi")
    memory_limit: str = "32Gi"  # memory limit per pod; "" = no limit (Kubernetes quantity: bytes)
    # c10d: an elasticPolicy; torchrun's dynamic rendezvous on the master pod, and a failed node makes
    # every node restart its worker group (max_restarts) and resume from the latest checkpoint,
    # on as many nodes as are left within [min_nodes, max_nodes]. static: no elasticPolicy;
    # torchrun's static rendezvous on MASTER_ADDR with the operator's node rank, no restarts
    # inside the pod, always num_nodes nodes (name).
    rendezvous: Literal["c10d", "static"] = "c10d"
    max_restarts: int = (
        3  # worker-group restarts by torchrun on each node before the pod fails; c10d only (count)
    )
    restart_policy: Literal["OnFailure", "ExitCode", "Never", "Always"] = (
        "OnFailure"  # what the operator does when a pod's container exits (name)
    )
    backoff_limit: int = 3  # pod restarts before the operator marks the job failed (count)
    clean_pod_policy: Literal["Running", "All", "None"] = (
        "Running"  # pods the operator deletes when the job ends: still running, all, none (name)
    )
    # The elastic range (c10d only): the job starts num_nodes pods and trains on any node count
    # within [min_nodes, max_nodes], data_parallel_size scaled with it (Params.at_nodes); a
    # preempted node is dropped and the others resume from the latest checkpoint without it.
    min_nodes: int = 0  # fewest nodes the job trains on; 0 = num_nodes (nodes)
    max_nodes: int = 0  # most nodes the job trains on, when more Worker pods join; 0 = num_nodes (nodes)
    # Once min_nodes have joined a rendezvous, how long it waits for more (torchrun's
    # last_call_timeout; in the manifest only when min_nodes < max_nodes) (s).
    rendezvous_last_call_s: int = 30
    # Keep-alive period of each node in the rendezvous; a node silent for 3 of them is dropped
    # (torchrun's keep_alive_interval; in the manifest only when min_nodes < max_nodes) (s).
    node_heartbeat_s: int = 5

    def __post_init__(self) -> None:
        section = f"{SECTION}.job"
        for key in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            value = getattr(self, key)
            if (value or key.endswith("_request")) and not _QUANTITY.match(value):
                raise ValueError(
                    f'{section}.{key}: expected a Kubernetes quantity such as "4", "500m" or "32Gi", got {value!r}'
                )
        for key in ("max_restarts", "backoff_limit", "min_nodes", "max_nodes"):
            if getattr(self, key) < 0:
                raise ValueError(f"{section}.{key}: must be >= 0, got {getattr(self, key)}")
        if self.rendezvous == "static" and self.max_restarts:
            raise ValueError(
                f"{section}.max_restarts: torchrun restarts worker groups only with the c10d rendezvous; "
                f"set it to 0 with rendezvous: static, got {self.max_restarts}"
            )
        for key in ("rendezvous_last_call_s", "node_heartbeat_s"):
            if getattr(self, key) < 1:
                raise ValueError(f"{section}.{key}: must be >= 1 s, got {getattr(self, key)}")


@dataclass(frozen=True)
class Params:
    """The ``pretrain`` section of params.yaml. Defaults are the CPU demo (about 3 min on 2 cores)."""

    model: ModelParams = field(default_factory=ModelParams)  # the GPT shape (see ModelParams)
    data: DataParams = field(default_factory=DataParams)  # sources, blend weights, split (see DataParams)
    make_vocab_size_divisible_by: int = 128  # pad the embedding rows up to a multiple (tokens)
    micro_batch_size: int = 8  # sequences per forward/backward pass on one rank (sequences)
    global_batch_size: int = 8  # sequences per optimizer step, all ranks; multiple of micro * dp (sequences)
    train_steps: int = 200  # optimizer steps (steps)
    lr: float = 6.0e-4  # peak learning rate after warmup (AdamW step size)
    min_lr: float = 6.0e-5  # learning rate at the end of the cosine decay (AdamW step size)
    warmup_steps: int = 20  # linear warmup from 0 to lr (steps)
    weight_decay: float = 0.1  # AdamW decoupled weight decay on matrices (fraction per unit lr)
    adam_beta1: float = 0.9  # AdamW first-moment decay (0-1)
    adam_beta2: float = 0.95  # AdamW second-moment decay (0-1)
    adam_eps: float = 1.0e-8  # AdamW denominator epsilon (gradient units)
    grad_clip: float = 1.0  # max global L2 norm of the gradient; 0 disables clipping (norm)
    eval_interval: int = 25  # evaluate on the valid split every N steps, and at the end (steps)
    eval_iters: int = 8  # micro batches per evaluation, the same batches each time (micro batches)
    seed: int = 1234  # seed of weights, data order and dropout (integer)
    cpu_threads: int = 2  # torch intra-op threads per process on CPU, fixed for reproducible sums (threads)
    tensor_parallel_size: int = 1  # ranks that split each layer's matrices (ranks)
    pipeline_parallel_size: int = 1  # ranks that split the layers into stages (ranks)
    # Model replicas that split each global batch, at num_nodes nodes; an elastic job
    # (job.min_nodes < job.max_nodes) scales it with the nodes that joined (see at_nodes) (ranks).
    data_parallel_size: int = 1
    num_nodes: int = 1  # machines the job starts with; each runs tp*pp*dp / num_nodes processes (nodes)
    precision: Literal["fp32", "bf16"] = (
        "fp32"  # fp32, or bf16 mixed precision with fp32 master weights (GPU only)
    )
    use_distributed_optimizer: bool = (
        False  # shard optimizer state over data-parallel ranks (GPU only) (flag)
    )
    recompute: Literal["none", "selective", "full"] = (
        "none"  # activation recomputation: none, attention only, whole layers (name)
    )
    transformer_impl: Literal["auto", "local", "transformer_engine"] = (
        "auto"  # layer spec; auto = TE on GPU when installed (name)
    )
    checkpoint_interval: int = (
        50  # save a resumable checkpoint every N steps (and at the end); 0 = end only (steps)
    )
    keep_checkpoints: int = 2  # newest resumable checkpoints kept in the checkpoint folder (count)
    peak_flops_per_accelerator: float = (
        3.0e11  # peak dense FLOP/s of one device for MFU; CPU demo: an assumed 2 AVX-512 cores, fp32 (FLOP/s)
    )
    # No price key: the stage records time only; every USD figure comes from monitoring.prices
    # (see components.pretrain.accounting).
    accelerator_type: str = ""  # Kubernetes resource of the devices, e.g. nvidia.com/gpu; "" = CPU (name)
    accelerator_count: int = 0  # devices per pod (= processes per node on GPU); 0 = CPU only (count)
    job: JobParams = field(
        default_factory=JobParams
    )  # the PyTorchJob's pods when num_nodes > 1 (see JobParams)

    def __post_init__(self) -> None:
        check_positive(
            SECTION,
            make_vocab_size_divisible_by=self.make_vocab_size_divisible_by,
            micro_batch_size=self.micro_batch_size,
            global_batch_size=self.global_batch_size,
            train_steps=self.train_steps,
            lr=self.lr,
            adam_eps=self.adam_eps,
            eval_interval=self.eval_interval,
            eval_iters=self.eval_iters,
            cpu_threads=self.cpu_threads,
            tensor_parallel_size=self.tensor_parallel_size,
            pipeline_parallel_size=self.pipeline_parallel_size,
            data_parallel_size=self.data_parallel_size,
            num_nodes=self.num_nodes,
            keep_checkpoints=self.keep_checkpoints,
            peak_flops_per_accelerator=self.peak_flops_per_accelerator,
        )
        if not 0.0 <= self.min_lr <= self.lr:
            raise ValueError(f"{SECTION}.min_lr: must be within [0, lr={self.lr}], got {self.min_lr}")
        if not 0 <= self.warmup_steps <= self.train_steps:
            raise ValueError(
                f"{SECTION}.warmup_steps: must be within [0, train_steps={self.train_steps}], "
                f"got {self.warmup_steps}"
            )
        for key in ("weight_decay", "grad_clip", "checkpoint_interval"):
            if getattr(self, key) < 0:
                raise ValueError(f"{SECTION}.{key}: must be >= 0, got {getattr(self, key)}")
        check_fraction(SECTION, adam_beta1=self.adam_beta1, adam_beta2=self.adam_beta2)
        self._check_layout()
        self._check_elastic()
        check_accelerator(SECTION, self.accelerator_type, self.accelerator_count)
        if self.accelerator_count > 0 and self.accelerator_count != self.procs_per_node:
            raise ValueError(
                f"{SECTION}.accelerator_count: each node runs one process per device, "
                f"tp*pp*dp / num_nodes = {self.procs_per_node}; got {self.accelerator_count}"
            )

    def _check_layout(self) -> None:
        """The parallel layout: refused here, before any process is launched."""
        m, tp, pp, dp = (
            self.model,
            self.tensor_parallel_size,
            self.pipeline_parallel_size,
            self.data_parallel_size,
        )
        if m.num_attention_heads % tp:
            raise ValueError(
                f"{SECTION}.tensor_parallel_size: must divide model.num_attention_heads "
                f"{m.num_attention_heads}, got {tp}"
            )
        if m.ffn_hidden_size % tp:
            raise ValueError(
                f"{SECTION}.tensor_parallel_size: must divide model.ffn_hidden_size {m.ffn_hidden_size}, got {tp}"
            )
        if m.num_layers % pp:
            raise ValueError(
                f"{SECTION}.pipeline_parallel_size: must divide model.num_layers {m.num_layers}, got {pp}"
            )
        if self.global_batch_size % (self.micro_batch_size * dp):
            raise ValueError(
                f"{SECTION}.global_batch_size: must be a multiple of micro_batch_size * data_parallel_size "
                f"= {self.micro_batch_size} * {dp}, got {self.global_batch_size}"
            )
        if self.world_size % self.num_nodes:
            raise ValueError(
                f"{SECTION}.num_nodes: must divide the world size tp*pp*dp = {self.world_size}, "
                f"got {self.num_nodes}"
            )

    def _check_elastic(self) -> None:
        """The elastic range: every node count in it must hold whole model replicas and split the
        global batch evenly, refused here (naming the bound at fault) before any process starts."""
        section, job = f"{SECTION}.job", self.job
        low, high = self.node_range
        if not low <= self.num_nodes <= high:
            raise ValueError(
                f"{section}.{'min_nodes' if low > self.num_nodes else 'max_nodes'}: must satisfy "
                f"min_nodes <= num_nodes = {self.num_nodes} <= max_nodes, got min_nodes={low}, max_nodes={high}"
            )
        if low == high:
            return
        key = "min_nodes" if low < self.num_nodes else "max_nodes"
        if job.rendezvous != "c10d":
            raise ValueError(
                f"{section}.{key}: an elastic range ({low} to {high} nodes) needs rendezvous: c10d; "
                f"the static rendezvous always runs num_nodes = {self.num_nodes} nodes"
            )
        replica = self.tensor_parallel_size * self.pipeline_parallel_size
        for nodes in range(low, high + 1):
            key = "min_nodes" if nodes < self.num_nodes else "max_nodes"
            world = nodes * self.procs_per_node
            if world % replica:
                raise ValueError(
                    f"{section}.{key}: at {nodes} node(s) the job has {nodes} x {self.procs_per_node} = "
                    f"{world} processes, not a multiple of one model replica tp*pp = {replica}"
                )
            dp = world // replica
            if self.global_batch_size % (self.micro_batch_size * dp):
                raise ValueError(
                    f"{section}.{key}: at {nodes} node(s) data_parallel_size is {dp}, and "
                    f"global_batch_size {self.global_batch_size} is not a multiple of "
                    f"micro_batch_size * {dp} = {self.micro_batch_size * dp}"
                )

    @property
    def node_range(self) -> tuple[int, int]:
        """(fewest, most) nodes the job trains on: ``job.min_nodes`` / ``job.max_nodes``, 0 = num_nodes."""
        return self.job.min_nodes or self.num_nodes, self.job.max_nodes or self.num_nodes

    def at_nodes(self, nodes: int) -> Params:
        """These params as they run on ``nodes`` nodes of the elastic range.

        ``data_parallel_size`` is the size at ``num_nodes``; on ``nodes`` nodes it becomes
        ``nodes * procs_per_node / (tp * pp)`` (the processes per node, one per device, stay),
        ``num_nodes`` becomes ``nodes`` and the range is written out. ``global_batch_size`` does
        not change: the micro batches each rank accumulates per step (``grad_accumulation``)
        follow dp, and the samples of each step do not depend on the layout
        (``data.step_sample_ids``), so the loss is the same function of the step on any node
        count (up to the order of float sums). Raises ValueError outside the range.
        """
        low, high = self.node_range
        if not low <= nodes <= high:
            raise ValueError(
                f"{SECTION}.job.min_nodes: {nodes} node(s) is outside the elastic range [{low}, {high}]"
            )
        if nodes == self.num_nodes:
            return self
        replica = self.tensor_parallel_size * self.pipeline_parallel_size
        return dataclasses.replace(
            self,
            num_nodes=nodes,
            data_parallel_size=nodes * self.procs_per_node // replica,
            job=dataclasses.replace(self.job, min_nodes=low, max_nodes=high),
        )

    def nodes_for_world(self, world: int) -> int | None:
        """The node count of the elastic range that gives ``world`` processes, or None."""
        low, high = self.node_range
        nodes, rest = divmod(world, self.procs_per_node)
        return nodes if not rest and low <= nodes <= high else None

    @property
    def world_size(self) -> int:
        """Processes in the job: tensor x pipeline x data parallel."""
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.data_parallel_size

    @property
    def procs_per_node(self) -> int:
        """Processes (one per device on GPU) on each node."""
        return self.world_size // self.num_nodes

    @property
    def grad_accumulation(self) -> int:
        """Micro batches per optimizer step on each data-parallel rank."""
        return self.global_batch_size // (self.micro_batch_size * self.data_parallel_size)
