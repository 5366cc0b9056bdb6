"""Resumable training checkpoints: where they live, how they are committed, which one is latest.

Layout (``checkpoint_root`` is ``--checkpoint-dir``; by default ``<output>.checkpoints``)::

    <checkpoint_root>/<fingerprint>/     one folder per training run (params + shape + data)
        run.json                         what the fingerprint covers, for humans
        latest                           text: the name of the newest complete step folder
        step_00000050/                   megatron dist_checkpointing: model, optimizer, RNG
            train_state.json             step, per-step losses, loss.csv rows, timings (per run)
        dataset-cache/                   megatron's sample-index caches

Atomicity: a step is written into ``.step_XXXXXXXX.partial`` and renamed to ``step_XXXXXXXX`` only
when every rank has finished; then ``latest`` is replaced (temp file + rename). A run killed at any
moment leaves ``latest`` pointing at a complete folder (or no ``latest`` at all), and the next run
with the same fingerprint resumes from it. The fingerprint leaves out the keys that only change
how the same training is executed (parallel layout, threads, checkpoint cadence, accounting), so a
run may resume on a different layout: dist_checkpointing reshards.

Every function here is plain file handling (no torch), called on global rank 0 only unless stated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from components.common.io import dumps_json, is_remote

LATEST = "latest"
STATE_FILE = "train_state.json"
RUN_FILE = "run.json"
DATASET_CACHE = "dataset-cache"
_PREFIX = "step_"

# Params that do not change what is trained, only how (or what is reported): a checkpoint stays
# valid when they change, so they are not part of the run fingerprint.
EXECUTION_KEYS = frozenset(
    {
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "data_parallel_size",
        "num_nodes",
        "cpu_threads",
        "transformer_impl",
        "recompute",
        "checkpoint_interval",
        "keep_checkpoints",
        "peak_flops_per_accelerator",
        "accelerator_type",
        "accelerator_count",
        "job",
    }
)
_HASH_BYTES = 1 << 20  # head and tail of each .bin file hashed (bytes)


@dataclasses.dataclass
class TrainState:
    """Progress saved with every checkpoint (JSON; floats round-trip exactly)."""

    step: int = 0  # optimizer steps done
    initial_valid_loss: float | None = None  # before the first step (nats/token)
    steps: list[dict[str, float]] = dataclasses.field(default_factory=list)  # steps.csv rows
    evals: list[dict[str, float]] = dataclasses.field(default_factory=list)  # loss.csv rows
    train_seconds: float = 0.0  # time in training steps, summed over resumes (s)
    wall_seconds: float = 0.0  # wall time of the runs up to this checkpoint, summed over resumes (s)
    # Wall time of each run that wrote a checkpoint of this training, in order, up to its last
    # checkpoint (s); sum(run_seconds) == wall_seconds. A killed run's time after its last
    # checkpoint is lost with it.
    run_seconds: list[float] = dataclasses.field(default_factory=list)
    skipped_steps: int = 0  # optimizer steps skipped (non-finite gradients in mixed precision)
    layout: dict[str, int] = dataclasses.field(default_factory=dict)  # tp/pp/dp that wrote it

    def to_json(self) -> str:
        return dumps_json(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainState:
        state = cls(**json.loads(text))
        if not state.run_seconds and state.wall_seconds:  # written before run_seconds existed
            state.run_seconds = [state.wall_seconds]
        return state


def default_root(output: str) -> Path:
    """Where checkpoints go without ``--checkpoint-dir``: beside a local output (it must survive
    the atomic replacement of the output folder), under .cache/ for a remote one."""
    if is_remote(output):
        return Path(".cache") / "pretrain-checkpoints"
    out = Path(output)
    return out.with_name(out.name + ".checkpoints")


def _file_digest(path: Path) -> str:
    """sha256 of a small file, or of size + head + tail for a large one (the .idx files, hashed
    whole, already pin every document length)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= 2 * _HASH_BYTES:
            h.update(f.read())
        else:
            h.update(str(size).encode())
            h.update(f.read(_HASH_BYTES))
            f.seek(size - _HASH_BYTES)
            h.update(f.read(_HASH_BYTES))
    return h.hexdigest()


def fingerprint(
    params_dict: dict[str, Any], shape_dict: dict[str, Any], files: list[Path]
) -> tuple[str, dict]:
    """(hex id, what it covers) of a training run: the params that change the trajectory, the
    model shape and the input files' digests."""
    covered = {
        "params": {k: v for k, v in sorted(params_dict.items()) if k not in EXECUTION_KEYS},
        "shape": shape_dict,
        "data": {p.name: _file_digest(p) for p in sorted(files)},
    }
    digest = hashlib.sha256(json.dumps(covered, sort_keys=True).encode()).hexdigest()
    return digest[:16], covered


def prepare_run_dir(root: str | Path, run_id: str, covered: dict) -> Path:
    """Create ``root/run_id`` (with run.json, written by global rank 0); return it."""
    run_dir = Path(root) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if os.environ.get("RANK", "0") == "0" and not (run_dir / RUN_FILE).exists():
        _atomic_write(run_dir / RUN_FILE, dumps_json(covered))
    return run_dir


def step_name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete step folder ``latest`` names, or None (no checkpoint yet: start fresh)."""
    pointer = Path(run_dir) / LATEST
    if not pointer.exists():
        return None
    folder = Path(run_dir) / pointer.read_text().strip()
    if not (folder / STATE_FILE).exists():
        raise FileNotFoundError(f"{pointer} names {folder.name}, which is incomplete or missing")
    return folder


def read_state(step_dir: str | Path) -> TrainState:
    return TrainState.from_json((Path(step_dir) / STATE_FILE).read_text())


def begin(run_dir: str | Path, step: int) -> Path:
    """A fresh, empty ``.step_XXXXXXXX.partial`` folder (a leftover from a killed run is removed)."""
    partial = Path(run_dir) / f".{step_name(step)}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def write_state(partial: str | Path, state: TrainState) -> None:
    _atomic_write(Path(partial) / STATE_FILE, state.to_json())


def commit(run_dir: str | Path, step: int, keep: int, final: bool = False) -> Path:
    """Rename the partial folder of ``step`` into place, point ``latest`` at it, then apply the
    retention rule. Call after every rank has finished writing.

    Retention, so that the checkpoint root stays bounded however often params change:

    - the newest ``keep`` step folders of this run, the final one among them at the end (a
      rerun with the same params and data then trains no step again); older ones are removed;
    - leftover ``.step_*.partial`` folders of killed saves are removed;
    - ``final`` (``step`` is the last training step): the other run folders of the same root
      whose training had also finished are removed. They are superseded trainings (other params
      or data: each change of them starts a new folder, which is what grew the root without
      bound); nothing resumes from them. Unfinished ones stay: a killed run, or another job
      still training, resumes from them.
    """
    run_dir = Path(run_dir)
    final_dir = run_dir / step_name(step)
    if final_dir.exists():  # the same step from a run killed between this rename and `latest`
        shutil.rmtree(final_dir)
    os.replace(run_dir / f".{step_name(step)}.partial", final_dir)
    _fsync_dir(run_dir)
    _atomic_write(run_dir / LATEST, final_dir.name + "\n")
    steps = sorted(p for p in run_dir.glob(f"{_PREFIX}*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for partial in run_dir.glob(f".{_PREFIX}*.partial"):
        shutil.rmtree(partial, ignore_errors=True)
    if final:
        for other in run_dir.parent.iterdir():
            if other != run_dir and other.is_dir() and is_finished(other):
                shutil.rmtree(other, ignore_errors=True)
    return final_dir


def is_finished(run_dir: str | Path) -> bool:
    """True when ``run_dir``'s latest checkpoint is the last step its run.json asks for."""
    run_dir = Path(run_dir)
    try:
        train_steps = json.loads((run_dir / RUN_FILE).read_text())["params"]["train_steps"]
        latest = latest_checkpoint(run_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not a run folder of this stage, or a damaged one: never touched
    return latest is not None and read_state(latest).step >= train_steps


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
