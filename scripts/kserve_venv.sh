#!/usr/bin/env bash
# Create the KServe test venv: the kserve SDK, pinned (requirements/kserve-test.txt), in a venv of
# its own, because its pins conflict with kfp's. tests/pipeline/test_kserve.py validates the
# InferenceService deploy writes with KServe's own models there. About 1 minute, 450 MB.
#   scripts/kserve_venv.sh [VENV_DIR]        (a second call with nothing changed does nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.cache/test-venvs/kserve}
STAMP="$VENV/.installed"
REQS=(requirements/kserve-test.txt scripts/kserve_venv.sh)

if [ -f "$STAMP" ] && [ -z "$(find "${REQS[@]}" -newer "$STAMP" 2>/dev/null)" ]; then
  echo "kserve-venv: $VENV is up to date"
  exit 0
fi
rm -rf "$VENV"
python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements/kserve-test.txt
"$VENV/bin/python" -m pip check
touch "$STAMP"
echo "kserve-venv: $VENV ready"
