#!/usr/bin/env bash
# Ray's dispatch overhead: one 20-run study launched by `--engine=local --jobs 2` and on a
# one-node Ray cluster of 2 CPUs (`--engine=ray`, one CPU a run), interleaved (experiments.bench
# --ray_address). Ray runs in a network namespace of its own with the loopback alone: outside one
# it probes an outside address (needs root, for unshare).
#   results/bench/engines.sh [OUT_DIR]   (PYTHON and MLP_JAX_DATA as for launch.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}
exec unshare -n sh -c '
  set -e
  ip link set lo up
  ray="$(dirname "$0")/ray"
  "$ray" start --head --num-cpus=2 --include-dashboard=false --object-store-memory=100000000 \
    --node-ip-address=127.0.0.1 --port=6399 > /dev/null
  trap "\"$ray\" stop > /dev/null" EXIT
  "$0" -m experiments.bench --ray_address=127.0.0.1:6399 --jobs=2 --repeats=2 \
    --study_axis=lr=0.05,0.1,0.2,0.3,0.5 --study_axis=label_smoothing=0,0.05,0.1,0.2 \
    --study_steps=1000 --out_dir="$1"
' "$python" "${1:-results/bench/engines}"
