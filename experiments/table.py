"""Export the accuracy table of a results file: one line per row, mean ± std over seeds.

    python -m experiments.table --results=runs/seed_table/results.jsonl --grid=seed_table \\
        --format=md --out=runs/seed_table/table.md

writes the table and, next to it, a chart (`table.png`) of our mean ± std beside the published
value of each row. For a study (named, or typed with the `--axis` flags), the table pivots its
first two axes, with confidence intervals and Welch's tests, and the chart is a heatmap. With a
grid or study named, only the records of its settings (with the flags after `--` that launched
it) count. Every number comes from the run records; diverged runs are counted, not averaged.
The records of a search (experiments.search) make a table of its trials instead, one line each.
"""

import dataclasses
import os

from absl import flags

from experiments import cli
from mlp_jax.campaign import grids, plots, tables
from mlp_jax.core.errors import InputError
from mlp_jax.store import results

flags.DEFINE_string("results", None, "JSON-lines file of run records.", required=True)
flags.DEFINE_string(
    "grid",
    None,
    "Order rows as this grid does, or pivot this study (default: rows as they appear).",
)
flags.DEFINE_multi_string(
    "axis", [], f"A typed study's axis: {grids.AXIS_FORMAT}; repeat per axis."
)
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
    extra = argv[1:]
    unknown = [form for form in FLAGS.format if form not in tables.FORMATS]
    if unknown:
        raise InputError(
            f"unknown --format {','.join(unknown)!r}; accepted: {', '.join(tables.FORMATS)}"
        )
    if not os.path.isfile(FLAGS.results):
        raise InputError(f"missing results file {FLAGS.results!r}")
    if FLAGS.axis and not FLAGS.grid:
        raise InputError("--axis needs --grid, the study's name; accepted: --grid=NAME --axis=...")
    if FLAGS.out:
        cli.check_writable(os.path.dirname(os.path.abspath(FLAGS.out)), "out", FLAGS.out)
    searched = [r for r in results.read(FLAGS.results) if "trial" in r]
    records = searched or results.read(FLAGS.results, tables.FIELDS)
    study = grids.study(FLAGS.grid, FLAGS.axis, extra) if FLAGS.grid else None
    if searched:  # a search's trials: its figures are Optuna's, written by the search
        table, formats = tables.trials(searched), tables.TRIAL_FORMATS
    elif study:
        configs = {r.name: dataclasses.asdict(cli.row_config(r, extra)) for r in study.rows()}
        table, formats = tables.pivot(records, study, configs), tables.STUDY_FORMATS
    else:
        rows = grids.get(FLAGS.grid) if FLAGS.grid else ()
        configs = {r.name: dataclasses.asdict(cli.row_config(r, extra)) for r in rows}
        records = tables.of_settings(records, configs)
        table, formats = tables.build(records, FLAGS.grid), tables.FORMATS
    top = tables.provenance(
        FLAGS.command or f"results of {FLAGS.results}",
        [r for r in records if "platform" in r],  # not a failed trial's
        FLAGS.wall_seconds,
    )
    if not FLAGS.out:
        for form in FLAGS.format:
            print(formats[form](table, top), end="")
        return
    stem = os.path.splitext(FLAGS.out)[0]
    written = tables.write(stem, table, {form: formats[form] for form in FLAGS.format}, top)
    if not searched:
        chart = plots.study_heatmap if study else plots.table_chart
        written.append(chart(table, stem + ".png", FLAGS.grid or os.path.basename(FLAGS.results)))
    print("wrote", " ".join(written))


if __name__ == "__main__":
    cli.run(main, positional=True)
