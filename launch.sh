#!/usr/bin/env bash
# Run every row of a grid or cell of a study with N seeds, then export its table:
#   ./launch.sh GRID|study NAME [--axis FLAG=V1,V2 ...] [--seeds N] [--jobs J] [--out DIR] [--list] [--row K] [-- flags for every run]
# The launcher is experiments/launch.py (scheduling: mlp_jax/campaign/launcher.py); this picks its Python:
# $PYTHON if set, else .venv/bin/python if present, else python3.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m experiments.launch "$@"
