#!/usr/bin/env bash
# Create a venv and install the pinned dependencies and the project (editable). Used by the Makefile
# and by both Dockerfiles, so the images install exactly what the tests exercise.
#   scripts/setup.sh [VENV_DIR]        (a second call with nothing changed does nothing)
#   SETUP_KEEP_TORCH=1 scripts/setup.sh /opt/venv
#       GPU images: keep the base image's CUDA torch (venv with system site packages, torch pin dropped).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
STAMP="$VENV/.installed"
REQS=(requirements/base.txt requirements/dev.txt requirements/constraints.txt pyproject.toml scripts/setup.sh)

if [ -f "$STAMP" ] && [ -z "$(find "${REQS[@]}" -newer "$STAMP" 2>/dev/null)" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi
CONSTRAINTS=requirements/constraints.txt
if [ "${SETUP_KEEP_TORCH:-0}" = 1 ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
  CONSTRAINTS=$(mktemp)
  grep -vE '^(torch|nvidia-|triton)' requirements/constraints.txt > "$CONSTRAINTS"
else
  [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
  # torch first and exactly: a floating torch resolves to a multi-GB CUDA build (STACK-NOTES).
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" torch==2.13.0
fi
"$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" -r requirements/base.txt -r requirements/dev.txt
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
"$VENV/bin/python" -m pip check
touch "$STAMP"
echo "setup: $VENV ready"
