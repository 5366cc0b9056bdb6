"""Strict, typed loading of params.yaml.

Every stage declares its parameters as a frozen dataclass (in ``components/<stage>/params.py``,
which must stay import-light). ``load_params`` validates the *whole* file every time a stage
starts, so a typo anywhere is refused before any stage does work, with a one-line message
naming the key (``clean.min_chars: expected int, got str 'ten'``).

The same ``from_dict`` is used by the Kubeflow components, which receive each section as a
pipeline parameter (a dict), so both orchestrators go through one validator.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

# One name per stage everywhere: the params section, the package and the DVC stage.
STAGES: tuple[str, ...] = (
    "ingest",
    "clean",
    "tokenize",
    "pretrain",
    "finetune",
    "sft",
    "compress",
    "evaluate",
    "select",
    "deploy",
    "monitor",
    "report",
)
# The long-running services beside the DAG own their settings (a ``Settings`` dataclass in the
# module named here) and their section of the same file, so one loader validates the whole file.
SERVICES: dict[str, str] = {"serving": "serving.settings", "monitoring": "monitoring.settings"}
# Every section of params.yaml, in file order.
SECTIONS: tuple[str, ...] = (*STAGES, *SERVICES)

T = TypeVar("T")


class ParamsError(ValueError):
    """A params file or section that does not match its schema. The message names the key."""


def params_class(section: str) -> type:
    """The dataclass of a section: ``components.<stage>.params.Params`` for a stage, the
    service's ``Settings`` for ``serving`` and ``monitoring``."""
    if section in SERVICES:
        return importlib.import_module(SERVICES[section]).Settings
    if section not in STAGES:
        raise ParamsError(f"unknown section {section!r}; sections are {', '.join(SECTIONS)}")
    return importlib.import_module(f"components.{section}.params").Params


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, struct_numbers: bool = False) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (nested dataclasses built).

    ``struct_numbers``: accept integral floats for int fields. Kubeflow passes dict parameters
    as protobuf Structs, whose numbers are all doubles (3 arrives as 3.0).
    """
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, struct_numbers)
            except ParamsError as exc:
                errors.append(str(exc))
        raise ParamsError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ParamsError(f"{key}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [_convert(v, item_tp, f"{key}[{i}]", struct_numbers) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        _key_tp, val_tp = get_args(tp) or (str, Any)
        return {str(k): _convert(v, val_tp, f"{key}.{k}", struct_numbers) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key, struct_numbers)
    if tp is float:
        # YAML writes 1 for 1.0; accept ints where a float is expected, but never bools.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if struct_numbers and isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ParamsError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def from_dict(cls: type[T], data: Any, section: str, struct_numbers: bool = False) -> T:
    """Build the dataclass ``cls`` from ``data``, refusing unknown keys and wrong types.

    ``section`` prefixes every key in error messages (``pretrain.optimizer.lr``);
    ``struct_numbers`` is for Kubeflow's dict parameters (see ``_convert``).
    Keys missing from ``data`` take the dataclass default; a key with no default is required.
    """
    if not isinstance(data, dict):
        raise ParamsError(f"{section}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(f"{section}.{unknown[0]}: unknown key (known keys: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, field in fields.items():
        key = f"{section}.{name}"
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key, struct_numbers)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{key}: missing required key")
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ range checks
        msg = str(exc)
        raise ParamsError(msg if msg.startswith(section) else f"{section}: {msg}") from None
    return obj


def to_dict(params: Any) -> dict[str, Any]:
    """The plain-dict form of a params object (what KFP pipeline parameters carry)."""
    return dataclasses.asdict(params)


def yaml_error(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where (line and column, 1-based) and what. The caller
    prefixes the file name."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"not valid YAML: {where}{problem}" + (f" ({context})" if context else "")


def read_params_file(path: str | Path) -> dict[str, Any]:
    """Read params.yaml and check its sections: every stage and service present, nothing else."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ParamsError("params file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(yaml_error(exc)) from None
    if not isinstance(raw, dict):
        raise ParamsError("expected a mapping of stage sections")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"{unknown[0]}: unknown section (sections are {', '.join(SECTIONS)})")
    missing = [s for s in SECTIONS if s not in raw]
    if missing:
        raise ParamsError(f"{missing[0]}: missing section")
    return raw


def load_all(path: str | Path) -> dict[str, Any]:
    """Validate every section of the params file; return {section: params object}."""
    raw = read_params_file(path)
    return {section: from_dict(params_class(section), raw[section] or {}, section) for section in SECTIONS}


def load_params(path: str | Path, stage: str) -> Any:
    """Validate the whole file (so no stage starts on a broken one) and return one section."""
    return load_all(path)[stage]


def check_positive(section: str, **values: float) -> None:
    """Raise ValueError naming the first key whose value is not > 0 (for __post_init__)."""
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{section}.{name}: must be > 0, got {value!r}")


def check_fraction(section: str, **values: float) -> None:
    """Raise ValueError naming the first key whose value is outside [0, 1]."""
    for name, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{section}.{name}: must be within [0, 1], got {value!r}")


def check_accelerator(section: str, accelerator_type: str, accelerator_count: int) -> None:
    """Raise ValueError naming the key when a Kubeflow pod's device request cannot be scheduled:
    a negative count, or devices asked for without saying which resource they are."""
    if accelerator_count < 0:
        raise ValueError(f"{section}.accelerator_count: must be >= 0, got {accelerator_count!r}")
    if accelerator_count > 0 and not accelerator_type:
        raise ValueError(
            f"{section}.accelerator_type: required when accelerator_count > 0 (e.g. nvidia.com/gpu)"
        )
