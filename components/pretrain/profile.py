"""Apply a hardware profile (params/profiles/*.yaml: a ``pretrain`` section) to a params file.

    python -m components.pretrain.profile params/profiles/gpt-1b-8gpu.yaml \
        [--base params.yaml] --output params-gpt-1b-8gpu.yaml

Writes ``--output``: the base file with its ``pretrain`` section replaced by the profile's, after
validating every section with the strict loader (a bad key is refused with exit status 2 and the
output is not written). Comments of the base file are not carried over.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from components.common.params import SECTIONS, ParamsError, from_dict, params_class, read_params_file
from components.pretrain.params import SECTION, Params


def read_profile(path: str | Path) -> dict[str, Any]:
    """The profile's ``pretrain`` section, validated."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if set(raw) != {SECTION}:
        raise ParamsError(f"{path}: a profile holds only a {SECTION!r} section, found {sorted(raw)}")
    from_dict(Params, raw[SECTION], SECTION)
    return raw[SECTION]


def apply_profile(base: str | Path, profile: str | Path) -> dict[str, Any]:
    """``base`` (a whole params file, validated) with the profile's pretrain section."""
    sections = read_params_file(base)
    sections[SECTION] = read_profile(profile)
    for stage in SECTIONS:
        from_dict(params_class(stage), sections[stage] or {}, stage)
    return sections


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.pretrain.profile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("profile", help="a params/profiles/*.yaml file")
    parser.add_argument(
        "--base", default="params.yaml", help="params file to start from (default: %(default)s)"
    )
    parser.add_argument("--output", required=True, help="params file to write")
    args = parser.parse_args(argv)
    try:
        sections = apply_profile(args.base, args.profile)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    header = f"# {args.base} with the pretrain section of {args.profile} (components.pretrain.profile)\n"
    Path(args.output).write_text(header + yaml.safe_dump(sections, sort_keys=False))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
