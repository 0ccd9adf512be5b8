"""Benchmark mlp_jax on every platform JAX sees: speed, FLOP/s against the matmul peak, speed-up.

For each platform (always the CPU, and each GPU or TPU present) it measures the best float32
matrix-multiply FLOP/s (square products), then trains the tutorial protocol (625-441 relu6,
batch 100) with mlp_jax and with a minimal hand-written JAX loop, interleaved `--repeats` times,
and reports steps/s, examples/s and the achieved FLOP/s of the matrix products (analytic count,
forward and backward) as a fraction of that peak. It also times bfloat16 matrix products, the
best_cpu recipe, and the minimal loop with each performance choice taken away. `--sweep` adds
throughput against batch size, replicas (`num_seeds`) and width, with a plot.

    python -m experiments.bench --data_dir=../shared/datasets/mnist --sweep \\
        --out_dir=results/bench/cpu     # about 9 minutes on 2 CPU cores

`--startup` measures instead what a run costs besides training: the seconds from a process's
start to the first training step of `experiments.mlp` (compilation included) with no, a cold and
a warm compilation cache, beside `import jax, flax, optax` alone and, with `--baseline=DIR`, an
earlier checkout of this repository, interleaved `--repeats` times; with `--study_axis`, a study
launched in each checkout against the sum of its runs' training times.

`--ray_address=HOST:PORT --jobs=J` launches that study instead with `--engine=local --jobs=J` and
on the Ray cluster at the address (one CPU a run, so a cluster of J CPUs), interleaved `--repeats`
times: Ray's dispatch overhead (results/bench/engines.sh starts such a cluster and runs it).
"""

from collections.abc import Callable
import dataclasses
import datetime
import json
import os
import sys
import tempfile

from absl import flags
import jax

from experiments import cli
from mlp_jax.campaign import grids, plots
from mlp_jax.core import data
from mlp_jax.core.config import Config, parse_hidden
from mlp_jax.core.errors import InputError
from mlp_jax.store import results
from mlp_jax.uses import benchmark

flags.DEFINE_string("hidden", "625,441", "Hidden layer sizes of the timed network.")
flags.DEFINE_string("act", "relu6", "Hidden activation.")
flags.DEFINE_integer("batch_size", 100, "Images per step.")
flags.DEFINE_integer("epochs", 6, "Epochs per timed run (550 steps each at batch 100).")
flags.DEFINE_integer("repeats", 6, "Timed runs of mlp_jax and of the minimal loop, interleaved.")
flags.DEFINE_boolean("recipe", True, "Also time the best_cpu recipe.")
flags.DEFINE_boolean("sweep", False, "Also sweep batch size, replicas and width.")
flags.DEFINE_float("seconds_per_point", 1.5, "Timed seconds per sweep point.")
flags.DEFINE_boolean(
    "checkpoint_cost",
    False,
    "Only measure what a work folder costs the main job (its 10,000 steps with a checkpoint and "
    "TensorBoard events at each evaluation), against the same run without, --repeats times.",
)
flags.DEFINE_boolean(
    "startup",
    False,
    "Only measure each run's overhead: process start to its first training step, and a study's "
    "wall time against its runs' training times (see the module's help).",
)
flags.DEFINE_string("baseline", None, "With --startup: an earlier checkout, timed beside this one.")
flags.DEFINE_string(
    "baseline_python", None, "With --baseline: the Python (its own venv) that runs the baseline."
)
flags.DEFINE_multi_string(
    "study_axis", [], "With --startup: an axis of a study launched in each checkout."
)
flags.DEFINE_integer("study_steps", 5000, "With --startup: steps of each of the study's runs.")
flags.DEFINE_string(
    "ray_address",
    None,
    "Only launch the study of --study_axis locally (--jobs runs at once) and on the Ray cluster "
    "at this address (one CPU a run; start it with --num-cpus equal to --jobs), --repeats "
    "interleaved rounds: Ray's dispatch overhead.",
)
flags.DEFINE_integer("jobs", 1, "With --ray_address: runs at once in each launch.", lower_bound=1)
flags.DEFINE_list("platforms", None, "Platforms to measure (default: cpu and the default one).")
cli.define_config_flags(only=("data_dir",))
flags.DEFINE_string("json", None, "Also write the measurements to this JSON file.")
flags.DEFINE_string("out_dir", None, "Write bench.json, bench.md and (--sweep) sweep.png here.")
FLAGS = flags.FLAGS


def bench_config() -> benchmark.BenchConfig:
    """Turn the flags into the benchmark's config."""
    tutorial = Config(
        hidden=parse_hidden(FLAGS.hidden),
        act=FLAGS.act,
        batch_size=FLAGS.batch_size,
        epochs=FLAGS.epochs,
        data_dir=cli.data_dir(FLAGS.data_dir),
    )
    recipe = None
    if FLAGS.recipe:
        (row,) = grids.get("best_cpu")
        recipe = cli.row_config(row, [f"--name={row.name}"])
    available = sorted({"cpu", jax.default_backend()})
    platforms = FLAGS.platforms or available
    for platform in platforms:
        if platform not in available:
            raise InputError(
                f"unknown --platforms {platform!r}; accepted here: {', '.join(available)}"
            )
    return benchmark.BenchConfig(
        tutorial=tutorial,
        recipe=recipe,
        platforms=tuple(platforms),
        repeats=FLAGS.repeats,
        sweep=FLAGS.sweep,
        seconds_per_point=FLAGS.seconds_per_point,
    )


def startup_config(out: str) -> benchmark.StartupConfig:
    """Turn the flags into the per-run overhead benchmark's config; runs record into `out`."""
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data_dir = cli.data_dir(FLAGS.data_dir)
    run_args = [f"--hidden={FLAGS.hidden}", f"--act={FLAGS.act}", f"--out={out}"]
    return benchmark.StartupConfig(
        run_args=(*run_args, *([f"--data_dir={os.path.abspath(data_dir)}"] if data_dir else [])),
        checkout=checkout,
        baseline=os.path.abspath(FLAGS.baseline) if FLAGS.baseline else None,
        python=sys.executable,
        baseline_python=FLAGS.baseline_python,
        repeats=FLAGS.repeats,
        study_axes=tuple(FLAGS.study_axis),
        study_steps=FLAGS.study_steps,
    )


def load() -> str:
    """Return this machine's load averages, as a report names them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def publish(stem: str, measured: dict, load_before: str, markdown: Callable[[dict], str]) -> None:
    """Print the report of `measured` as `markdown` makes it; with --out_dir, also write it to
    STEM.md and every number to STEM.json."""
    report = {
        "command": cli.command(),
        "date": datetime.date.today().isoformat(),
        **results.environment(),
        "load_before": load_before,
        "load_after": load(),
        **measured,
    }
    text = markdown(report)
    print(text)
    if FLAGS.out_dir:
        os.makedirs(FLAGS.out_dir, exist_ok=True)
        results.write_text(os.path.join(FLAGS.out_dir, f"{stem}.md"), text)
        results.write_text(
            os.path.join(FLAGS.out_dir, f"{stem}.json"), json.dumps(report, indent=1) + "\n"
        )


def measure_startup() -> None:
    """Measure and print the per-run overhead; write startup.json and startup.md to --out_dir."""
    load_before = load()
    with tempfile.TemporaryDirectory() as out:
        measured = benchmark.startup(startup_config(os.path.join(out, "results.jsonl")))
    publish("startup", measured, load_before, benchmark.startup_markdown)


def engine_flags() -> dict[str, list[str]]:
    """Return the launcher's flags of each engine compared: local first, the reference."""
    return {
        "local": [f"--jobs={FLAGS.jobs}"],
        "ray": ["--engine=ray", f"--ray_address={FLAGS.ray_address}", "--cpus_per_run=1"],
    }


def measure_engines() -> None:
    """Measure and print the study's wall time under each engine, --jobs runs at a time in each;
    write engines.md and engines.json to --out_dir."""
    if not FLAGS.study_axis:
        raise InputError(
            f"--ray_address {FLAGS.ray_address} without --study_axis: it times a study's "
            "launches; accepted: one or more --study_axis FLAG=V1,V2,..."
        )
    load_before, launch_flags = load(), engine_flags()
    with tempfile.TemporaryDirectory() as out:
        bench = startup_config(os.path.join(out, "results.jsonl"))
        measured = benchmark.engine_rounds(bench, launch_flags, FLAGS.jobs)
    report = {"launch_flags": launch_flags, "engines": measured}
    publish("engines", report, load_before, benchmark.engines_markdown)


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.ray_address:
        measure_engines()
        return
    if FLAGS.startup:
        measure_startup()
        return
    bench = bench_config()
    dataset = data.load(bench.tutorial.dataset, bench.tutorial.data_dir)
    main_job = dataclasses.replace(bench.tutorial, epochs=0)  # the default 10,000 steps
    measured = (
        {"checkpoint_cost": benchmark.checkpoint_cost(main_job, dataset, bench.repeats)}
        if FLAGS.checkpoint_cost
        else benchmark.run(bench, dataset)
    )
    report = {
        "command": cli.command(),
        "date": datetime.date.today().isoformat(),
        **results.environment(),
        **measured,
    }
    text = json.dumps(report, indent=1) if FLAGS.checkpoint_cost else benchmark.markdown(report)
    print(text)
    paths = [FLAGS.json] if FLAGS.json else []
    if FLAGS.out_dir:
        os.makedirs(FLAGS.out_dir, exist_ok=True)
        paths.append(os.path.join(FLAGS.out_dir, "bench.json"))
        results.write_text(os.path.join(FLAGS.out_dir, "bench.md"), text)
        if bench.sweep:
            plots.throughput_sweep(
                {p: r["sweep"] for p, r in report["platforms"].items()},
                os.path.join(FLAGS.out_dir, "sweep.png"),
            )
    for path in paths:
        results.write_text(path, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    cli.run(main)
