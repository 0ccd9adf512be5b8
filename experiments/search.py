"""Search the settings of experiments.mlp with Optuna, pruning on the validation curve; every
trial a run with its work folder and record (mlp_jax/campaign/search.py: the folder's layout).

    ./launch.sh search NAME [--param FLAG=KIND:...] [--trials N] [--sampler tpe|random|grid]
        [--pruner median|successive_halving|hyperband|none] [--jobs J] [--storage URL]
        [--examples E] [--confirm K] [--out DIR] [--engine=ray [--ray_address=HOST:PORT|auto]
        [--cpus_per_run=C] [--gpus_per_run=G]] [-- flags for every trial]

NAME is a space of grids.SPACES (`mlp`) or a new name whose space is the --param flags alone;
each --param adds a parameter or replaces the space's own for that flag (space.py: the syntax).
Trials train seed 0 on the validation split, never the test split, until the study has N trials
(complete, pruned, failed or diverged). --jobs J runs J workers on this machine (J-1 in child
processes, logs in DIR/logs/); more workers, here or on other machines, join with the same
command and --storage. The same command resumes a killed search: a dead worker's trial is retried
from its work folder, nothing is trained twice. A study of the same name with another space or
other flags after `--` is refused. At the end: DIR/table.{md,csv,json,tex} of the trials, Optuna's
figures in DIR/figures/, and with --confirm K the best trial's settings retrained with seeds
1..K on the test split, read then for the first time (test mean ± std, 95% prediction interval).

--storage takes a journal file (the default, DIR/search.journal: no server, safe for the workers
of one machine) or an SQLAlchemy URL such as postgresql://USER@HOST/DB for workers on several
machines, with Optuna's heartbeat every --heartbeat seconds: a trial silent for twice that is
retried. Give the password in $PGPASSWORD, not the URL; a password in the URL is shown as ***.

--engine=ray runs the J workers as Ray tasks on the cluster at --ray_address, each holding
--cpus_per_run CPUs and --gpus_per_run GPUs (logs in DIR/logs/); this process waits for them,
then writes the table and figures and confirms here. DIR must be a folder every node mounts; the
workers append their trials' records to DIR/results.jsonl under its file lock, so it must be on
a filesystem whose locks hold across machines (NFSv4, CephFS, Lustre with -o flock).
"""

import os
import re
import subprocess
import sys

from absl import flags
import optuna

from experiments import cli
from mlp_jax.campaign import engines, grids, launcher
from mlp_jax.campaign import search as searching
from mlp_jax.campaign import space as spaces
from mlp_jax.core.errors import InputError

flags.DEFINE_multi_string("param", [], f"A parameter to sample: {spaces.PARAM_FORMAT}.")
flags.DEFINE_integer("trials", 20, "Trials the study ends with.", lower_bound=1)
flags.DEFINE_enum("sampler", "tpe", list(searching.SAMPLERS), "Optuna sampler.")
flags.DEFINE_enum("pruner", "median", list(searching.PRUNERS), "Optuna pruner.")
flags.DEFINE_integer("sampler_seed", 0, "Seed of the sampler.", lower_bound=0)
flags.DEFINE_integer("jobs", 1, "Workers on this machine.", lower_bound=1)
flags.DEFINE_string("out", None, "Output folder (default runs/NAME).")
flags.DEFINE_string("storage", "", "Optuna storage: journal file or database URL.")
flags.DEFINE_integer(
    "examples", 0, "Training examples per trial (steps = E / batch size); 0: the flags' steps.",
    lower_bound=0,
)  # fmt: skip
flags.DEFINE_integer("evaluations", 10, "With --examples: evaluations per trial.", lower_bound=1)
flags.DEFINE_integer("heartbeat", 60, "Seconds between a database's heartbeats.", lower_bound=1)
flags.DEFINE_integer("confirm", 0, "Retrain the best trial with this many seeds.", lower_bound=0)
flags.DEFINE_boolean("worker", False, "Only train trials: no table, figures or confirmation.")
cli.define_engine_flags()
FLAGS = flags.FLAGS


def hide_password(arg: str) -> str:
    """Return a command-line argument with the password of a storage URL in it as ***."""
    flag, sep, value = arg.partition("=")
    return flag + sep + searching.redact(value) if sep and "://" in value else searching.redact(arg)


def redacted_command() -> str:
    """Return this process's command line, any password in a storage URL hidden."""
    return cli.command_line("experiments.search", [hide_password(a) for a in sys.argv[1:]])


def build(argv: list[str]) -> searching.Search:
    """Return the search the flags and the words NAME and `-- flags` describe."""
    if len(argv) < 2 or argv[1].startswith("-"):
        raise InputError("missing the search's NAME; usage: ./launch.sh search NAME [-- flags]")
    name, extra = argv[1], argv[2:]
    if not re.fullmatch(r"[\w.-]+", name):
        raise InputError(
            f"search name {name!r} is not a folder name; accepted: {grids.NAME_FORMAT}"
        )
    launcher.refuse_launch_flags(extra)
    space = spaces.merge(grids.SPACES.get(name, spaces.Space(())), FLAGS.param)
    spaces.check_extra(space, extra)
    return searching.Search(
        name=name,
        space=space,
        out=FLAGS.out or os.path.join("runs", name),
        trials=FLAGS.trials,
        extra=tuple(extra),
        sampler=FLAGS.sampler,
        pruner=FLAGS.pruner,
        seed=FLAGS.sampler_seed,
        storage=FLAGS.storage,
        examples=FLAGS.examples,
        evaluations=FLAGS.evaluations,
        heartbeat=FLAGS.heartbeat,
    )


def worker_command() -> list[str]:
    """Return the command of one more worker of this search: its flags, no engine's."""
    args = sys.argv[1:]
    end = args.index("--") if "--" in args else len(args)
    options, skip = [], False
    for arg in args[:end]:
        engine_flag = arg.startswith("-") and arg.lstrip("-").partition("=")[0] in cli.ENGINE_FLAGS
        if not skip and not engine_flag:
            options.append(arg)
        skip = not skip and engine_flag and "=" not in arg  # its value follows
    own = ["--jobs=1", "--confirm=0", "--worker"]  # the last of a flag's values counts
    return [sys.executable, "-m", "experiments.search", *options, *own, *args[end:]]


def worker_log(search: searching.Search, k: int) -> str:
    """Return worker k's log, OUT/logs/worker_K.log (its folder made)."""
    os.makedirs(os.path.join(search.out, "logs"), exist_ok=True)
    return os.path.join(search.out, "logs", f"worker_{k}.log")


def start_workers(search: searching.Search, count: int) -> list[subprocess.Popen]:
    """Start `count` more workers of this search, each logging to OUT/logs/worker_K.log."""
    workers = []
    for k in range(1, count + 1):
        with open(worker_log(search, k), "a") as log:
            log.write(f"=== {redacted_command()} (worker {k})\n")
            log.flush()
            workers.append(subprocess.Popen(worker_command(), stdout=log, stderr=subprocess.STDOUT))
    return workers


def work_on_ray(
    search: searching.Search, engine: engines.EngineChoice
) -> tuple[optuna.Study, list[int]]:
    """Run the search's --jobs workers as tasks on the Ray cluster; return the study and the
    workers' exit codes."""
    study = searching.load(search, cli.config_from_args)
    tasks = engines.open_engine(engine, search.out, sys.executable)
    try:
        jobs = [(worker_command(), worker_log(search, k)) for k in range(1, FLAGS.jobs + 1)]
        codes = engines.run_all(tasks, jobs)
    finally:
        tasks.close()
    return study, codes


def main(argv: list[str]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial is printed below
    search = build(argv)
    engine = cli.engine_choice()
    print("search:", searching.describe(search), flush=True)
    command = redacted_command()
    if engine.name == "ray" and not FLAGS.worker:
        study, codes = work_on_ray(search, engine)
    else:
        children = [] if FLAGS.worker else start_workers(search, FLAGS.jobs - 1)
        try:
            study = searching.work(
                search, cli.config_from_args, command, lambda line: print(line, flush=True)
            )
        finally:
            codes = [child.wait() for child in children]
    if any(codes):
        print(f"error: a worker failed; see {os.path.join(search.out, 'logs')}", file=sys.stderr)
        sys.exit(1)
    if FLAGS.worker:
        return
    print("wrote", " ".join(searching.export(search, study, command)))
    if FLAGS.confirm:
        records = searching.confirm(search, study, cli.config_from_args, FLAGS.confirm, command)
        print(f"best trial's settings, seeds 1..{FLAGS.confirm}:", searching.summary(records))
        print("wrote", " ".join(searching.export_confirmation(search, records, command)))


if __name__ == "__main__":
    cli.run(main, positional=True)
