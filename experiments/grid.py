"""Print one `experiments.mlp` command per row of a grid or cell of a study (used by launch.sh).

    python -m experiments.grid --grid=seed_table --seeds=5 --out=runs/seed_table [--pending] \\
        [--row=K] -- [flags for every run]
    python -m experiments.grid --grid=NAME --axis=act=relu,tanh --axis=hidden=64,64/64 ...

Each command trains seeds 0..N-1 of its row in one process (`--num_seeds`), appends the records
to OUT/results.jsonl, logs to OUT/logs/ROW.log and keeps its checkpoints in OUT/work/ROW, so a
row interrupted mid-training resumes from its last checkpoint. With --pending, rows whose seeds
are all recorded under the same settings are left out, and a row with some seeds recorded starts
at the first missing one, so an interrupted launch resumes where it stopped.
"""

import dataclasses
import os
import shlex
import sys

from absl import flags

from experiments import cli
from mlp_jax import grids, results

flags.DEFINE_string(
    "grid",
    None,
    f"Grid or study name: {', '.join([*grids.GRIDS, *grids.STUDIES])}, or a new study's name "
    "with --axis.",
    required=True,
)
flags.DEFINE_multi_string("axis", [], f"A study's axis: {grids.AXIS_FORMAT}; repeat per axis.")
flags.DEFINE_integer("seeds", 1, "Seeds per row (0..N-1).", lower_bound=1)
flags.DEFINE_string("out", None, "Output folder (default runs/GRID).")
flags.DEFINE_string("row", "", "Only this row: its 1-based number or its name.")
flags.DEFINE_boolean("pending", False, "Only rows (and seeds) not yet in OUT/results.jsonl.")
flags.DEFINE_string("python", sys.executable, "Python interpreter the commands use.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    extra, out = argv[1:], FLAGS.out or os.path.join("runs", FLAGS.grid)
    results_path = os.path.join(out, "results.jsonl")
    records = results.read(results_path) if FLAGS.pending and os.path.exists(results_path) else []
    for row in grids.select(grids.rows_of(FLAGS.grid, FLAGS.axis, extra), FLAGS.row):
        config = dataclasses.asdict(cli.row_config(row, extra))
        done = results.done_seeds(records, row.name, config)
        missing = [seed for seed in range(FLAGS.seeds) if seed not in done]
        if not missing:
            continue
        command = [
            FLAGS.python,
            "-m",
            "experiments.mlp",
            f"--name={row.name}",
            *row.args(),
            *extra,
            f"--seed={missing[0]}",
            f"--num_seeds={FLAGS.seeds - missing[0]}",
            f"--out={results_path}",
            f"--workdir={os.path.join(out, 'work', row.name)}",
        ]
        log = os.path.join(out, "logs", f"{row.name}.log")
        print(f"{shlex.join(command)} > {shlex.quote(log)} 2>&1")


if __name__ == "__main__":
    cli.run(main, positional=True)
