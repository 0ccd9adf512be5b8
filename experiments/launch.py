"""Run every row of a grid or cell of a study with N seeds, then export its table (launch.sh runs
this module; see mlp_jax/campaign/launcher.py for the scheduling and the output folder).

    ./launch.sh GRID|study NAME [--axis FLAG=V1,V2 ...] [--seeds N] [--jobs J] [--out DIR]
        [--list] [--row K] [--engine=ray [--ray_address=HOST:PORT|auto] [--cpus_per_run=C]
        [--gpus_per_run=G]] [-- flags for every run]
    ./launch.sh search NAME [options of experiments.search] [-- flags for every trial]

A relaunch trains only the (row, seed, settings) runs not yet in DIR/results.jsonl (default
runs/NAME): more --seeds add seeds, other flags after `--` add the runs of those flags, and a
killed launch resumes each row from its last checkpoint. --list prints one command per row (every
seed, for any scheduler) and trains nothing; --row K runs row K (number or name) only.

A study typed here is the product of its axes, each one flag of experiments.mlp and its values,
separated by commas; '/' inside a value stands for the flag's own comma (hidden=256/256 is
--hidden=256,256) and an empty value is the flag's empty value. Its cells are named from their
values (act-tanh__hidden-256x256); its table pivots the first two axes into a matrix, one matrix
per value of a third. A flag that is not experiments.mlp's, a bad value, a value given twice, an
axis also set after `--`, a flag the launch sets itself (--name, --seed, --num_seeds, --out,
--workdir) after `--`, or an --out folder that cannot take the records (read-only, or its
results.jsonl a folder) stops the launch with one line and exit code 2, before anything trains.

What counts as a run's settings is every flag of the run except the data folder, the evaluation
interval and the device layout. --jobs J runs J processes at a time; with several GPUs job slot i
runs on GPU i mod their number (XLA_PYTHON_CLIENT_PREALLOCATE=false when the jobs outnumber the
GPUs). Each finished row prints `done: ROW (3/11, elapsed 0:02:10, eta 0:05:03)`. A launch into a
folder that another launch is writing waits for it, then trains what is still missing.
DIR/wall_seconds adds up every launch into the folder, saved as each row finishes, every 10 s and
on SIGTERM or SIGINT (a kill -9 loses at most the last 10 s). The launch ends by exporting the
table as experiments.table does with the same --grid, --axis and flags after `--`.

--engine=ray runs each (row, seed group) as a Ray task on the cluster at --ray_address, with
--cpus_per_run CPUs and --gpus_per_run GPUs (instead of --jobs: as many at once as the cluster
holds); OUT must be a folder every node mounts at the same path, as the repository and Python
are. A task whose node dies is retried on another node, resuming from its last checkpoint; the
launch alone appends records to DIR/results.jsonl, each run's once (mlp_jax/campaign/engines.py,
launcher.py). An address that does not answer: one line, exit code 3; no node with a run's CPUs
and GPUs, or a node that cannot read OUT: one line, exit code 2, before anything runs.
"""

import dataclasses
import functools
import os
import shlex
import subprocess
import sys

from absl import flags

from experiments import cli
from mlp_jax.campaign import grids, launcher
from mlp_jax.core.errors import InputError

USAGE = " ".join(__doc__.split("\n\n")[1].split())
VALUED = ("axis", "seeds", "jobs", "out", "row", *cli.ENGINE_FLAGS)  # options taking a value
ACCEPTED = (
    "--axis FLAG=V1,V2, --seeds N, --jobs J, --out DIR, --row K, --list, --engine local|ray, "
    "--ray_address HOST:PORT|auto, --cpus_per_run C, --gpus_per_run G, -- FLAGS"
)
HELP = ("-h", "--help", "--helpshort", "--helpfull")

flags.DEFINE_multi_string("axis", [], f"A study's axis: {grids.AXIS_FORMAT}; repeat per axis.")
flags.DEFINE_integer("seeds", 1, "Seeds per row (0..N-1).", lower_bound=1)
flags.DEFINE_integer("jobs", 1, "Rows trained at a time, each in its own process.", lower_bound=1)
flags.DEFINE_string("out", None, "Output folder (default runs/NAME).")
flags.DEFINE_string("row", "", "Only this row: its 1-based number or its name.")
flags.DEFINE_boolean("list", False, "Print one command per row (every seed); train nothing.")
cli.define_engine_flags()
FLAGS = flags.FLAGS


def split_arguments(args: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Split launch.sh's arguments into the grid's name (GRID, or study NAME), the launch's
    options and the flags after `--`; raise InputError for an unknown option or a stray word."""
    end = args.index("--") if "--" in args else len(args)
    before, extra = args[:end], args[end + 1 :]
    names = before[: 2 if before[:1] == ["study"] else 1]
    if len(names) < (2 if names[:1] == ["study"] else 1) or any(n.startswith("-") for n in names):
        raise InputError(f"usage: {USAGE}")
    options = before[len(names) :]
    takes_value = False
    for arg in options:
        name = arg.lstrip("-").partition("=")[0]
        if takes_value:
            takes_value = False
        elif not arg.startswith("-"):
            raise InputError(f"unexpected argument {arg!r}; usage: {USAGE}")
        elif name not in (*VALUED, "list", "nolist"):
            raise InputError(f"unknown launch.sh option {arg!r}; accepted: {ACCEPTED}")
        else:
            takes_value = name in VALUED and "=" not in arg
    return names, options, extra


def export_table(grid: str, out: str, extra: list[str], command: str, wall: float) -> int:
    """Write OUT/table.{md,csv,json,tex,png} with experiments.table; return its exit code."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.table",
            f"--results={launcher.results_path(out)}",
            f"--grid={grid}",
            *(f"--axis={axis}" for axis in FLAGS.axis),
            "--format=md,csv,json,latex",
            f"--out={os.path.join(out, 'table.md')}",
            f"--command={command}",
            f"--wall_seconds={wall:.1f}",
            "--",
            *extra,
        ],
        check=False,
    ).returncode


def main(argv: list[str], names: list[str], extra: list[str], command: str) -> None:
    del argv  # split_arguments left no words for absl
    grid = names[-1]
    launcher.refuse_launch_flags(extra)
    rows = tuple(
        launcher.Row(r.name, (*r.args(), *extra), dataclasses.asdict(cli.row_config(r, extra)))
        for r in grids.select(grids.rows_of(grid, FLAGS.axis, extra), FLAGS.row)
    )
    engine = cli.engine_choice()
    if engine.name == "ray" and FLAGS["jobs"].present:
        raise InputError(
            "--jobs is the local engine's; accepted with --engine=ray: --cpus_per_run and "
            "--gpus_per_run (the cluster runs as many at once as its nodes hold)"
        )
    out = FLAGS.out or os.path.join("runs", grid)
    launch = launcher.Launch(grid, out, FLAGS.seeds, FLAGS.jobs, engine=engine)
    if FLAGS.list:  # every run, recorded or not: a finished one's work folder trains nothing
        print(launcher.shell_lines(launcher.missing_runs(rows, [], launch), out), end="")
        return
    code, wall = launcher.run(launch, rows)
    if code < 128 and os.path.exists(launcher.results_path(launch.out)):
        code = code or export_table(grid, launch.out, extra, command, wall)
    sys.exit(code)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["search"]:  # a search has its own entry point
        os.execv(sys.executable, [sys.executable, "-m", "experiments.search", *arguments[1:]])
    if set(HELP) & set(arguments[: arguments.index("--") if "--" in arguments else None]):
        print(f"{__doc__}\n{FLAGS.main_module_help()}")
        sys.exit(0)
    try:
        names, options, extra = split_arguments(arguments)
    except InputError as e:
        cli.fail(str(e))
    sys.argv = [sys.argv[0], *options]
    cli.run(
        functools.partial(
            main, names=names, extra=extra, command=shlex.join(["./launch.sh", *arguments])
        )
    )
