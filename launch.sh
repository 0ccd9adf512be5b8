#!/usr/bin/env bash
# Run every row of a grid or cell of a study with N seeds (one process per row), then export its
# table (a study's as a pivot of its first two axes, with confidence intervals and a heatmap).
#   ./launch.sh GRID|study NAME [--axis FLAG=V1,V2 ...] [--seeds N] [--jobs J] [--out DIR] [--list] [--row K] [-- flags for every run]
# Named grids and studies: see mlp_jax/grids.py. `study NAME --axis FLAG=V1,V2 --axis ...` runs
# the product of the axes, each a flag of experiments.mlp ('/' inside a value stands for ',',
# as in --axis hidden=256/256,512). Rows already recorded in DIR/results.jsonl (default runs/GRID) are
# skipped, so a second launch trains nothing and an interrupted one resumes; a launch into a DIR
# that another is writing waits for it to finish, then runs what is left. --list prints one
# command per row for any scheduler; --row K runs row K (number or name) only. On a host with
# several GPUs, job slot i runs on GPU i mod (number of GPUs). PYTHON overrides the interpreter.
# Each finished row is printed with the rows finished so far, the elapsed time and an ETA; each
# row checkpoints into DIR/work/ROW, so a row interrupted mid-training resumes there.
set -euo pipefail
cd "$(dirname "$0")"
command_line="./launch.sh $*"
usage() { sed -n '4p' "$0" | sed 's/^#  //' >&2; exit 2; }
[ $# -ge 1 ] && [[ $1 != -* ]] || usage
grid=$1; shift
if [ "$grid" = study ]; then
  [ $# -ge 1 ] && [[ $1 != -* ]] || usage
  grid=$1; shift
fi
seeds=1 jobs=1 out="" row="" list=0 axes=()
while [ $# -gt 0 ]; do
  case $1 in
    --seeds|--jobs|--out|--row) [ $# -ge 2 ] || usage; declare "${1#--}=$2"; shift 2 ;;
    --axis) [ $# -ge 2 ] || usage; axes+=("--axis=$2"); shift 2 ;;
    --list) list=1; shift ;;
    --) shift; break ;;
    *) echo "error: unknown launch.sh option '$1'; accepted: --axis FLAG=V1,V2, --seeds N," \
            "--jobs J, --out DIR, --row K, --list, -- FLAGS" >&2; exit 2 ;;
  esac
done
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "error: --jobs '$jobs' must be a positive integer" >&2; exit 2; }
out=${out:-runs/$grid}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
grid_args=(--grid="$grid" "${axes[@]}" --seeds="$seeds" --out="$out" --row="$row" --python="$PYTHON")
if [ "$list" = 1 ]; then exec "$PYTHON" -m experiments.grid "${grid_args[@]}" -- "$@"; fi

# The lock below makes the folder: check the input first, so a mistyped grid makes none.
[ -d "$out" ] || "$PYTHON" -m experiments.grid "${grid_args[@]}" -- "$@" > /dev/null
mkdir -p "$out/logs"
# Held until this launch and its runs end, so a second launch into $out trains no row twice.
exec 9>> "$out/.lock"
if ! flock -n 9; then
  echo "waiting for another launch.sh writing $out ..." >&2
  flock 9
fi
start=$(date +%s.%N)
commands=$("$PYTHON" -m experiments.grid "${grid_args[@]}" --pending -- "$@")
gpus=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
if [ "$gpus" -gt 0 ] && [ "$jobs" -gt "$gpus" ]; then
  export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share a GPU
fi
# finished BEGIN LINE [SUFFIX]: print LINE with the rows finished of $total, the time since the
# launch started and an ETA (mean seconds per finished row x rows left / job slots they fill).
# Rows finish in parallel: each records "BEGIN END" in $progress under a lock, then counts.
finished() {
  {
    flock 8
    echo "$1 $(date +%s.%N)" >&8
    awk -v line="$2" -v suffix="${3:-}" -v now="$(date +%s.%N)" -v start="$start" \
      -v total="$total" -v jobs="$jobs" '
      function clock(s) {
        s = int(s + 0.5)
        return sprintf("%d:%02d:%02d", s / 3600, s % 3600 / 60, s % 60)
      }
      { busy += $2 - $1; n++ }
      END {
        left = total - n; slots = jobs < left ? jobs : left
        eta = left ? busy / n * left / slots : 0
        printf "%s (%d/%d, elapsed %s, eta %s)%s\n", line, n, total, clock(now - start), \
          clock(eta), suffix
      }' "$progress"
  } 8>> "$progress"
}
status=0
if [ -n "$commands" ]; then
  total=$(printf '%s\n' "$commands" | wc -l)
  progress=$(mktemp)
  trap 'rm -f "$progress"' EXIT
  export -f finished
  export start total jobs progress
  echo "$total row(s) to run, $jobs at a time; logs in $out/logs"
  printf '%s\n' "$commands" | GPUS=$gpus xargs -d '\n' -n 1 -P "$jobs" --process-slot-var=SLOT \
    bash -c 'if [ "$GPUS" -gt 0 ]; then export CUDA_VISIBLE_DEVICES=$((SLOT % GPUS)); fi
             name=${1#*--name=}; name=${name%% *}; begin=$(date +%s.%N)
             if eval "$1"; then finished "$begin" "done: $name"
             else finished "$begin" "FAILED: $name" ", see its log"; exit 1; fi' _ \
    || status=$?
else
  echo "nothing to run: every row of $grid has $seeds seed(s) in $out/results.jsonl"
fi

# Wall time adds up over the launches that built these results.
elapsed=$(awk -v now="$(date +%s.%N)" -v start="$start" -v before="$(cat "$out/wall_seconds" 2>/dev/null || echo 0)" \
  'BEGIN { printf "%.1f", now - start + before }')
echo "$elapsed" > "$out/wall_seconds"
if [ -f "$out/results.jsonl" ]; then
  "$PYTHON" -m experiments.table --results="$out/results.jsonl" --grid="$grid" "${axes[@]}" \
    --format=md,csv,json,latex --out="$out/table.md" --command="$command_line" \
    --wall_seconds="$elapsed" -- "$@"
fi
exit "$status"
