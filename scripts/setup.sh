#!/usr/bin/env bash
# Create .venv and install the pinned dependencies and the project (editable). Used by the Makefile
# and by the Dockerfile, so the image installs exactly what the tests exercise.
# Usage: scripts/setup.sh [VENV_DIR]   (a second call with nothing changed does nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
STAMP="$VENV/.installed"
REQS=(requirements/base.txt requirements/dev.txt requirements/constraints.txt pyproject.toml)

if [ -f "$STAMP" ] && [ -z "$(find "${REQS[@]}" -newer "$STAMP" 2>/dev/null)" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi
[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and exactly: a floating torch resolves to a multi-GB CUDA build (STACK-NOTES).
"$VENV/bin/python" -m pip install --quiet -c requirements/constraints.txt torch==2.13.0
"$VENV/bin/python" -m pip install --quiet -c requirements/constraints.txt \
  -r requirements/base.txt -r requirements/dev.txt
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
"$VENV/bin/python" -m pip check
touch "$STAMP"
echo "setup: $VENV ready"
