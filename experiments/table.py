"""Export the accuracy table of a results file: one line per row, mean ± std over seeds.

    python -m experiments.table --results=runs/seed_table/results.jsonl --grid=seed_table \\
        --format=md --out=runs/seed_table/table.md

writes the table and, next to it, a chart (`table.png`) of our mean ± std beside the published
value of each row. Every number comes from the run records; diverged runs are counted, not averaged.
"""

import os

from absl import flags

from experiments import cli
from mlp_jax import plots, results, tables
from mlp_jax.errors import InputError

flags.DEFINE_string("results", None, "JSON-lines file of run records.", required=True)
flags.DEFINE_string("grid", None, "Order rows as this grid does (default: as they appear).")
flags.DEFINE_list(
    "format", ["md"], f"Output format(s), comma-separated: {', '.join(tables.FORMATS)}."
)
flags.DEFINE_string(
    "out",
    None,
    "Write here, one file per format with its extension, and the chart next to it; default: print.",
)
flags.DEFINE_string("command", None, "The command that produced the results, for the header.")
flags.DEFINE_float("wall_seconds", None, "Total wall time of that command, for the header.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    unknown = [form for form in FLAGS.format if form not in tables.FORMATS]
    if unknown:
        raise InputError(
            f"unknown --format {','.join(unknown)!r}; accepted: {', '.join(tables.FORMATS)}"
        )
    if not os.path.isfile(FLAGS.results):
        raise InputError(f"missing results file {FLAGS.results!r}")
    records = results.read(FLAGS.results)
    lines = tables.build(records, FLAGS.grid)
    top = tables.provenance(
        FLAGS.command or f"results of {FLAGS.results}", records, FLAGS.wall_seconds
    )
    if not FLAGS.out:
        for form in FLAGS.format:
            print(tables.FORMATS[form](lines, top), end="")
        return
    stem = os.path.splitext(FLAGS.out)[0]
    written = [
        results.write_text(f"{stem}.{tables.EXTENSIONS[form]}", tables.FORMATS[form](lines, top))
        for form in FLAGS.format
    ]
    written.append(
        plots.table_chart(lines, stem + ".png", FLAGS.grid or os.path.basename(FLAGS.results))
    )
    print("wrote", " ".join(written))


if __name__ == "__main__":
    cli.run(main)
