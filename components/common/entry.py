"""The one door into every stage, for both orchestrators.

``python -m components.<stage>`` (what dvc.yaml runs) and the stage's Kubeflow component both call
``run_stage(stage, params, **arguments)`` with the same arguments: paths or URIs of the stage's
inputs and output, named as the core's ``run`` names them. So both get the same logging, warning
filters, params validation, process set-up, metrics and lineage; the doors only translate their
own argument styles (argparse flags, KFP artifacts) into that call.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.common.io import is_remote, write_json
from components.common.noise import hidden_summary, hide_library_noise
from components.common.params import from_dict, load_params, params_class

log = logging.getLogger("stage")

# Written into a stage's output folder once it has succeeded: when it ran, how long it took and what
# it read (the run report draws the DAG from these). Not a DVC out: it changes every run.
RUN_RECORD = "run.json"

# Loggers that are chatty at INFO on every run; their warnings and errors still show.
QUIET_LOGGERS: tuple[str, ...] = ("megatron",)


class StageRefused(RuntimeError):
    """A stage that refuses its inputs on purpose (the model-selection gate): exit status 1 on the
    command line, a failed task on Kubeflow, with this message."""


class InputError(ValueError):
    """Arguments the stage cannot work with (missing inputs): exit status 2, before any work."""


def setup_logging() -> None:
    """One log format on both doors (stderr, INFO), megatron's INFO flood silenced and the known
    library noise hidden (components.common.noise; LLM_VERBOSE=1 shows it)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    hide_library_noise()


def stage_params(stage: str, params: str | os.PathLike | Mapping[str, Any]) -> Any:
    """The stage's typed params: from a params file (every section validated, so no stage starts
    on a broken file) or from a mapping (a Kubeflow dict parameter: protobuf Struct numbers are all
    doubles, so integral floats are accepted for int keys)."""
    if isinstance(params, Mapping):
        return from_dict(params_class(stage), dict(params), stage, struct_numbers=True)
    return load_params(params, stage)


@contextlib.contextmanager
def stage_tmpdir(stage: str, output: str | os.PathLike | None) -> Iterator[Path]:
    """A temporary folder for everything the stage and its helpers (Beam's runner, torchrun's
    workers, checkpoint writers) put in the system temp folder: made beside the output (so on the
    same disk as it, and inside the project under `dvc repro`), set as TMPDIR for this process and
    its children, and removed afterwards, whatever happened. A remote output gets one under
    ``.cache/tmp`` in the working folder."""
    base = Path(".cache/tmp") if output is None or is_remote(output) else Path(output).parent
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".tmp-{stage}-", dir=base)).resolve()
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)


# A core whose ``run`` takes this keyword gets the ``monitoring`` section's prices and training
# window (``Costs``): the one place prices live, read for the stage on both doors (``stage_costs``).
COSTS = "costs"


@dataclass(frozen=True)
class Costs:
    """``monitoring.prices`` (``monitoring.settings.Prices``) and ``monitoring.training_window``
    (``TrainingWindow``), what ``llm.costs`` prices training with, for a stage that turns
    recorded time into dollars (select's return on investment)."""

    prices: Any
    training_window: Any


def stage_costs(params: str | os.PathLike | Mapping[str, Any], given: Any = None) -> Costs:
    """The prices and training window for a stage whose core takes ``costs``: from ``given`` (the
    Kubeflow door: a dict ``{prices: {...}, training_window: {...}}``, the pipeline's ``costs``
    parameter, validated by the same loader) or, when none is given, from the params file's
    ``monitoring`` section (the command line: ``params`` is the file). A params mapping without
    ``given`` is an InputError: the prices are never guessed."""
    if isinstance(given, Costs):
        return given
    if isinstance(given, Mapping):
        unknown = sorted(set(given) - {"prices", "training_window"})
        if unknown:
            raise InputError(f"costs: unknown key {unknown[0]!r} (keys: prices, training_window)")
        settings = from_dict(params_class("monitoring"), dict(given), "monitoring", struct_numbers=True)
    elif given is None and not isinstance(params, Mapping):
        settings = load_params(params, "monitoring")
    else:
        raise InputError(
            "costs: the stage needs monitoring.prices and monitoring.training_window: pass the "
            "pipeline's costs parameter (a dict) with a params dict"
        )
    return Costs(prices=settings.prices, training_window=settings.training_window)


def run_stage(stage: str, params: str | os.PathLike | Mapping[str, Any], **arguments: Any) -> dict[str, Any]:
    """Validate ``params``, set up the process, run ``components.<stage>.core.run``; return its metrics.

    ``arguments`` are the core's keyword arguments (paths or URIs). An empty string means "not
    given" (None): Kubeflow passes optional string inputs as "". A core whose ``run`` takes
    ``costs`` gets ``stage_costs(params, arguments.get("costs"))``.
    Raises ParamsError (bad params), InputError (bad arguments) or StageRefused (the gate).
    """
    setup_logging()
    typed = stage_params(stage, params)
    core = importlib.import_module(f"components.{stage}.core")
    # A stage that starts helper processes declares what its process needs (pretrain: children
    # that die with it); both doors run it, since each runs the stage as a whole process.
    prepare = getattr(core, "prepare_process", None)
    if prepare is not None:
        prepare()
    arguments = {k: (None if v == "" else v) for k, v in arguments.items()}
    log.info(
        "%s: %s", stage, ", ".join(f"{k}={v}" for k, v in arguments.items() if v is not None and k != COSTS)
    )
    if COSTS in inspect.signature(core.run).parameters:
        arguments[COSTS] = stage_costs(params, arguments.get(COSTS))
    started, clock = datetime.now(UTC), time.monotonic()
    try:
        with stage_tmpdir(stage, arguments.get("output")):
            metrics = core.run(params=typed, **arguments)
        # One record per stage run: under torchrun every rank runs this entry, and only rank 0
        # writes the output (the others' records raced its rename of a shared output folder: a
        # two-node job on one PVC failed so on a fresh clone).
        if arguments.get("output") is not None and os.environ.get("RANK", "0") == "0":
            write_run_record(stage, arguments, started, time.monotonic() - clock)
        return metrics
    finally:
        summary = hidden_summary()
        if summary:
            log.info("%s: %s", stage, summary)


def write_run_record(stage: str, arguments: Mapping[str, Any], started: datetime, seconds: float) -> None:
    """``<output>/run.json``: ``{stage, started_at, finished_at (UTC, ISO 8601), seconds (wall
    clock), arguments: {name: path or URI, or a list of them}, output}``. ``arguments`` are those
    that name existing files or folders, or URIs (the report tells by them which stage's output
    each stage read)."""
    output = str(arguments["output"])

    def names_data(value: Any) -> bool:
        return isinstance(value, str | os.PathLike) and (is_remote(value) or os.path.exists(value))

    named: dict[str, Any] = {}
    for name, value in arguments.items():
        if name == "output":
            continue
        if names_data(value):
            named[name] = str(value)
        elif isinstance(value, list | tuple) and value and all(names_data(v) for v in value):
            named[name] = [str(v) for v in value]
    record = {
        "stage": stage,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "arguments": named,
        "output": output,
    }
    write_json(output.rstrip("/") + "/" + RUN_RECORD, record)
