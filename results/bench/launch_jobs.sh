#!/usr/bin/env bash
# Throughput of `launch.sh --jobs 2` against `--jobs 1`, in one run: the same 4-row study (the
# tutorial net, 3,000 steps, one seed per row) launched into fresh folders as jobs 1, 2, 1, 2;
# prints each launch's runs per minute (from its OUT/wall_seconds) and the ratio of the means.
#   results/bench/launch_jobs.sh   (PYTHON and MLP_JAX_DATA as for launch.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
declare -A rate
for i in 1 2 3 4; do
  jobs=$(( i % 2 ? 1 : 2 ))
  ./launch.sh study jobs_bench --axis lr=0.1,0.2,0.3,0.5 --jobs "$jobs" --out "$tmp/$i" \
    -- --hidden=625,441 --act=relu6 --steps=3000 > "$tmp/$i.out"
  seconds=$(cat "$tmp/$i/wall_seconds")
  rate[$i]=$(awk -v s="$seconds" 'BEGIN { printf "%.2f", 4 * 60 / s }')
  echo "launch $i: --jobs $jobs, 4 runs in $seconds s, ${rate[$i]} runs/min"
done
awk -v a="${rate[1]}" -v b="${rate[2]}" -v c="${rate[3]}" -v d="${rate[4]}" \
  'BEGIN { printf "--jobs 2 / --jobs 1: %.2fx\n", (b + d) / (a + c) }'
