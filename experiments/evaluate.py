"""Evaluate a saved model without training: each replica's accuracy, and the ensemble's.

Reads the latest (or best) checkpoint of a work folder made with `experiments.mlp --workdir`,
measures every replica on the run's validation and test splits with the program training used
(so the numbers equal the recorded ones) and, with several replicas, the averaged softmax of
those that finished (a diverged replica's NaNs are left out):

    python -m experiments.evaluate --workdir=runs/mlp --checkpoint=best --corruptions \\
        --plot_dir=runs/mlp/figures --data_dir=../shared/datasets/mnist

--corruptions adds the test accuracies under experiments.noise's corruptions; --plot_dir writes
the training curves, the ensemble's confusion matrix and misclassified digits, and the first
seed's first-layer weights.
"""

import os

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import cli
from mlp_jax.campaign import plots
from mlp_jax.core import data, train
from mlp_jax.core.errors import InputError
from mlp_jax.store import checkpoints, results
from mlp_jax.uses import evaluation, robustness

cli.define_workdir_flag(required=True)
flags.DEFINE_enum("checkpoint", "latest", checkpoints.WHICH, "Which checkpoint to evaluate.")
flags.DEFINE_boolean("corruptions", False, "Also test under experiments.noise's corruptions.")
flags.DEFINE_string(
    "plot_dir",
    None,
    "Write the curves, the confusion matrix and misclassified digits of the ensemble (the "
    "replica when one) and the first seed's first-layer weights here (PNG).",
)
cli.define_config_flags(only=("data_dir",))  # unset: $MLP_JAX_DATA, else the run's own folder
FLAGS = flags.FLAGS


def accuracy(correct: int, total: int) -> str:
    """Return `0.9512 (9512/10000)`: the fraction and the exact counts behind it."""
    return f"{train.fraction(np.array(correct), total):.4f} ({correct}/{total})"


def load_data(saved: checkpoints.Saved) -> data.Dataset:
    """Load the splits of the saved run's data; InputError unless its training split is the
    run's."""
    cfg = saved.cfg
    dataset = data.load(
        cfg.dataset,
        cli.data_dir(FLAGS.data_dir) or cfg.data_dir,
        cfg.validation_size,
        cfg.preprocess,
    )
    trained_on = saved.replicas.order.shape[-1]
    if dataset.train_x.shape[0] != trained_on:
        raise InputError(
            f"the data has {dataset.train_x.shape[0]} training images, the run {trained_on}; "
            "give the run's --data_dir"
        )
    return dataset


def print_ensemble(probs: jax.Array, labels: jax.Array, members: np.ndarray) -> None:
    """Print the test accuracy of the finished replicas' averaged softmax."""
    label = train.ensemble_label(int(members.sum()), len(members))
    ensemble = train.ensemble_accuracy(probs, labels, members)
    if ensemble is None:
        print(f"{label}: none to evaluate")
    else:
        right = round(ensemble * len(labels))
        print(f"{label}: test_accuracy {accuracy(right, len(labels))}")


def write_figures(
    saved: checkpoints.Saved, dataset: data.Dataset, probs: jax.Array, members: np.ndarray
) -> None:
    """Write the curves, the committee's confusion matrix and misclassified digits, and the
    first seed's first-layer weights to --plot_dir."""
    name = results.default_name(saved.cfg)
    # The finished replicas' committee; with none finished, the first replica, as it is.
    shown = members if members.any() else np.arange(len(members)) == 0
    first = jax.tree.map(lambda x: x[0], saved.replicas)
    written = plots.run_figures(
        saved.progress.history,
        np.asarray(dataset.test_x),
        np.asarray(dataset.test_y),
        np.asarray(jnp.argmax(train.committee(probs, shown), axis=-1)),
        FLAGS.plot_dir,
        name,
    )
    written.append(
        plots.first_layer_weights(
            np.asarray(train.eval_params(first)["params"]["Dense_0"]["kernel"]),
            os.path.join(FLAGS.plot_dir, f"{name}_first_layer.png"),
        )
    )
    print("figures:", " ".join(written))


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.plot_dir:
        cli.check_writable(FLAGS.plot_dir, "plot_dir", FLAGS.plot_dir)
    saved = checkpoints.load(FLAGS.workdir, FLAGS.checkpoint)
    cfg, progress = saved.cfg, saved.progress
    dataset = load_data(saved)
    print(
        f"{results.default_name(cfg)}: {FLAGS.checkpoint} checkpoint, step {progress.step} of "
        f"{cfg.total_steps(dataset.train_x.shape[0])} ({FLAGS.workdir})"
    )
    val, test, probs = evaluation.measure(cfg, saved.replicas, dataset)
    for r, seed in enumerate(saved.seeds):
        diverged = progress.diverged_at_step[r]
        print(
            f"seed {seed}: val_accuracy {accuracy(val[r], len(dataset.val_y))}  "
            f"test_accuracy {accuracy(test[r], len(dataset.test_y))}"
            + (f"  (diverged at step {diverged})" if diverged is not None else "")
        )
    members = train.finished(progress.diverged_at_step, probs)
    if len(saved.seeds) > 1:
        print_ensemble(probs, dataset.test_y, members)
    if FLAGS.corruptions:
        for kind, values in robustness.corrupted_accuracies(cfg, saved.replicas, dataset).items():
            each = "  ".join(f"{v:.4f}" for v in values)
            print(f"{kind:<16} {each}  mean {results.summarize(values)[0]:.4f}")
    if FLAGS.plot_dir:
        write_figures(saved, dataset, probs, members)


if __name__ == "__main__":
    cli.run(main)
