"""Train one MLP on MNIST and report its test accuracy.

Defaults are the TF1 tutorial's protocol: plain SGD at lr 0.5, batches of 100 drawn without
replacement from a fresh permutation each epoch (TF1 next_batch), 10,000 steps, every weight and
bias from N(0, 0.01^2), cross-entropy on the softmax, the first 5,000 training images held out for
validation (55,000 train). --out and --plot_dir are checked before training: a folder given as
--out, or a place that cannot be written, is refused at once. The tutorial's two-layer row:

    python -m experiments.mlp --hidden=625,441 --act=relu6 --data_dir=../shared/datasets/mnist

takes about 15 s on a 2-core CPU and reaches about 0.982-0.985 test accuracy (published: 0.985).
"""

from absl import flags
import jax
import numpy as np

from experiments import cli
from mlp_jax.core import data, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.store import results, runner

flags.DEFINE_string("out", "runs/results.jsonl", "JSON-lines file the run records are appended to.")
flags.DEFINE_string(
    "plot_dir",
    None,
    "Write the curves, misclassified digits and confusion matrix of the first seed here (PNG).",
)
flags.DEFINE_string(
    "compilation_cache",
    None,
    "Keep compiled programs in this folder and load those compiled before by any run (JAX's "
    "persistent compilation cache): what the run computes is the same, it only starts sooner.",
)
cli.define_config_flags()
cli.define_workdir_flag()
FLAGS = flags.FLAGS


def describe(evaluation: train.Evaluation, total_steps: int) -> str:
    """Return the progress line of one evaluation (means over the replicas that have not
    diverged, and how many have), with elapsed and ETA."""

    def clock(seconds: float) -> str:
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"

    replicas = len(evaluation.diverged_at_step)
    finished = [r for r, step in enumerate(evaluation.diverged_at_step) if step is None]
    parts = [f"step {evaluation.step:6d}"]
    if finished:
        parts += [
            f"{k} {results.summarize(getattr(evaluation, k)[finished])[0]:.4f}"
            for k in ("train_loss", "val_accuracy", "test_accuracy")
        ]
    if len(finished) < replicas:
        parts.append(f"diverged {replicas - len(finished)}/{replicas}")
    elapsed = evaluation.train_seconds + evaluation.eval_seconds
    eta = elapsed / evaluation.step * (total_steps - evaluation.step)
    parts += [
        f"steps/s {evaluation.steps_per_sec:.0f}",
        f"elapsed {clock(elapsed)}",
        f"eta {clock(eta)}",
    ]
    return "  ".join(parts)


def check_plot_dir() -> None:
    """Raise InputError unless --plot_dir is unset or writable in a single-process run."""
    if FLAGS.plot_dir and jax.process_count() > 1:
        raise InputError("--plot_dir works in single-process runs; drop it in a multi-host run")
    if FLAGS.plot_dir:
        cli.check_writable(FLAGS.plot_dir, "plot_dir", FLAGS.plot_dir)


def write_figures(cfg: Config, fit: train.FitResult, dataset: data.Dataset, name: str) -> None:
    """Write the first seed's curves, misclassified digits and confusion matrix to --plot_dir."""
    from mlp_jax.campaign import plots  # Matplotlib takes seconds to import: only when plotting

    predicted = train.predict_test_split(cfg, fit, dataset)
    written = plots.run_figures(
        fit.history,
        np.asarray(dataset.test_x),
        np.asarray(dataset.test_y),
        predicted,
        FLAGS.plot_dir,
        name,
    )
    print("figures:", " ".join(written))


def print_summary(fit: train.FitResult, records: list[dict]) -> None:
    """Print the timings, the ensemble's and each seed's test accuracy, and their mean."""
    print(
        f"compile {fit.compile_seconds:.1f}s  train {fit.train_seconds:.1f}s  "
        f"eval {fit.eval_seconds:.1f}s  {fit.steps_per_sec:.0f} steps/s  -> {FLAGS.out}"
    )
    if fit.ensemble_test_accuracy is not None:
        label = train.ensemble_label(fit.ensemble_members, len(records))
        print(f"{label}: test_accuracy={fit.ensemble_test_accuracy:.4f}")
    for record in records:
        if record["diverged"]:
            print(f"seed={record['seed']} diverged at step {record['diverged_at_step']}")
        elif len(records) > 1:
            print(f"seed={record['seed']} test_accuracy={record['test_accuracy']:.4f}")
    finished = [r["test_accuracy"] for r in records if not r["diverged"]]
    if not finished:
        print("test_accuracy=nan (every run diverged)")
    elif len(records) == 1:
        print(f"test_accuracy={finished[0]:.4f}")
    else:
        mean, std, n = results.summarize(finished)
        print(f"test_accuracy={mean:.4f} ± {std:.4f} (mean ± std over {n} seeds)")


def main(argv: list[str]) -> None:
    del argv
    cfg = cli.config_from_flags()
    check_plot_dir()
    if FLAGS.compilation_cache:
        cli.check_writable(FLAGS.compilation_cache, "compilation_cache", FLAGS.compilation_cache)
        train.cache_compilations(FLAGS.compilation_cache)
    print("config:", cfg.describe())
    env = results.environment()
    print(f"platform: {env['platform']} device: {env['device']}")
    dataset = data.load(cfg.dataset, cfg.data_dir, cfg.validation_size, cfg.preprocess)
    total = cfg.total_steps(dataset.train_x.shape[0])

    def report(evaluation: train.Evaluation) -> None:
        print(describe(evaluation, total), flush=True)

    fit, records, new = runner.train_and_record(
        cfg, dataset, FLAGS.out, FLAGS.workdir, on_eval=report, command=cli.command()
    )
    if not new:
        print(f"{FLAGS.workdir} holds this finished run already: nothing trained or recorded")
    if FLAGS.plot_dir:
        write_figures(cfg, fit, dataset, records[0]["name"])
    print_summary(fit, records)


if __name__ == "__main__":
    cli.run(main)
