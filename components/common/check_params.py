"""``python -m components.common.check_params params.yaml``: validate every section, one-line error.

`make run` calls this before `dvc repro`, so a bad params file is refused before any stage runs.
"""

from __future__ import annotations

import sys

from components.common.params import ParamsError, load_all


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else "params.yaml"
    try:
        load_all(path)
    except ParamsError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
