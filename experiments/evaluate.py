"""Evaluate saved models without training: each replica's accuracy, and their committee's.

Reads the latest (or best, or a step's) checkpoint of one or several work folders made with
`experiments.mlp --workdir`, measures every replica on its run's validation and test splits
(each folder's data preprocessed its own way) with the program training used, so the numbers
equal the recorded ones, and the averaged softmax of the replicas that finished (a diverged
replica is left out and counted). The folders may differ in architecture, preprocessing and
replicas, not in dataset or validation size:

    python -m experiments.evaluate --workdir=runs/mlp --checkpoint=best --corruptions \\
        --plot_dir=runs/mlp/figures --data_dir=../shared/datasets/mnist
    python -m experiments.evaluate --workdir=runs/a --workdir=runs/b --weights=validation \\
        --out=runs/committee.jsonl --table=runs/committee.md
    python -m experiments.evaluate --workdir=runs/cyclic@4000 --workdir=runs/cyclic \\
        --weights=accuracy --tta=shifts

--workdir=FOLDER@STEP adds that step's checkpoint (a snapshot kept by --keep_every) as members;
--weights=validation or accuracy weighs the members by the validation split
(mlp_jax/uses/evaluation.py), never the test split; --tta=shifts averages each member's softmax
over the image and its 1-pixel shifts (its validation accuracy printed beside test's, to judge
it by); --out appends the committee's record, --table writes its table; --corruptions adds each
folder's test accuracies under experiments.noise's corruptions; --plot_dir writes the
committee's confusion matrix and misclassified digits and, for one folder, its training curves
and first seed's first-layer weights.
"""

import dataclasses
import os

from absl import flags
import numpy as np

from experiments import cli
from mlp_jax.campaign import plots, tables
from mlp_jax.core import train
from mlp_jax.store import results
from mlp_jax.uses import evaluation, robustness

cli.define_workdir_flag(required=True, multiple=True)
cli.define_committee_flags()
flags.DEFINE_boolean("corruptions", False, "Also test under experiments.noise's corruptions.")
flags.DEFINE_string(
    "plot_dir",
    None,
    "Write the committee's confusion matrix and misclassified digits here (PNG) and, for one "
    "folder, its curves and its first seed's first-layer weights.",
)
flags.DEFINE_string(
    "out",
    None,
    "Append the committee's record to this JSON-lines file (its own: it is not a run record).",
)
flags.DEFINE_string("table", None, "Write the committee's markdown table to this file.")
cli.define_config_flags(only=("data_dir",))  # unset: $MLP_JAX_DATA, else each run's own folder
FLAGS = flags.FLAGS


def accuracy(correct: int, total: int) -> str:
    """Return `0.9512 (9512/10000)`: the fraction and the exact counts behind it."""
    return f"{train.fraction(np.array(correct), total):.4f} ({correct}/{total})"


def print_folder(folder: evaluation.Folder) -> None:
    """Print a work folder's checkpoint and each replica's accuracies (and corruptions)."""
    cfg, progress, split = folder.saved.cfg, folder.saved.progress, folder.data
    which = f"{folder.which} checkpoint" if isinstance(folder.which, str) else "checkpoint"
    tta = f", tta {folder.tta}" if folder.tta != "none" else ""
    print(
        f"{results.default_name(cfg)}: {which}, step {progress.step} of "
        f"{cfg.total_steps(split.train_x.shape[0])}{tta} ({folder.path})"
    )
    for r, seed in enumerate(folder.saved.seeds):
        diverged = progress.diverged_at_step[r]
        print(
            f"seed {seed}: val_accuracy {accuracy(folder.val_correct[r], len(split.val_y))}  "
            f"test_accuracy {accuracy(folder.test_correct[r], len(split.test_y))}"
            + (f"  (diverged at step {diverged})" if diverged is not None else "")
        )
    if FLAGS.corruptions:
        replicas = folder.saved.replicas
        for kind, values in robustness.corrupted_accuracies(cfg, replicas, split).items():
            each = "  ".join(f"{v:.4f}" for v in values)
            print(f"{kind:<16} {each}  mean {results.summarize(values)[0]:.4f}")


def print_committee(record: dict) -> None:
    """Print the committee's validation and test accuracies, its weights when not equal, and
    how it fares against its best member."""
    listed = record["members"]
    label = evaluation.label(record["entered"], len(listed), record["folders"])
    tta = f", tta {record['tta']}" if record["tta"] != "none" else ""
    print(
        f"{label}{tta}: val_accuracy {accuracy(record['val_correct'], record['val_total'])}  "
        f"test_accuracy {accuracy(record['test_correct'], record['test_total'])}"
    )
    if record["weights"] != "equal":
        weights = "  ".join(
            f"{m['folder']}@{m['step']} seed {m['seed']} {m['weight']:.3f}" for m in listed
        )
        print(f"weights ({record['weights']}): {weights}")
    if record["entered"] > 1:
        best = record["best_member"]
        print(
            f"against its best member by {record['best_by']} ({best['folder']} seed "
            f"{best['seed']}): {record['right_where_best_wrong']} test digits right that it "
            f"misses, {record['wrong_where_best_right']} missed that it gets right"
        )


def write_figures(committee: evaluation.Committee, load: evaluation.Loader) -> None:
    """Write the committee's confusion matrix and misclassified digits (as drawn, before any
    preprocessing) to --plot_dir and, for one folder, its curves and first-layer weights."""
    first = committee.folders[0]
    name = results.default_name(first.saved.cfg) if len(committee.folders) == 1 else "committee"
    drawn = load(dataclasses.replace(first.saved.cfg, preprocess="none"))
    labels, predicted = np.asarray(drawn.test_y), np.argmax(committee.test_probs, axis=-1)

    def path(kind: str) -> str:
        return os.path.join(FLAGS.plot_dir, f"{name}_{kind}.png")

    written = [
        plots.misclassified(np.asarray(drawn.test_x), labels, predicted, path("misclassified")),
        plots.confusion(labels, predicted, path("confusion")),
    ]
    if len(committee.folders) == 1:
        kernel = train.eval_params(first.saved.replicas)["params"]["Dense_0"]["kernel"][0]
        written.append(plots.curves(first.saved.progress.history, path("curves"), name))
        written.append(plots.first_layer_weights(np.asarray(kernel), path("first_layer")))
    print("figures:", " ".join(written))


def check_outputs() -> None:
    """Refuse, before any work, outputs that cannot be written."""
    if FLAGS.plot_dir:
        cli.check_writable(FLAGS.plot_dir, "plot_dir", FLAGS.plot_dir)
    if FLAGS.table:
        folder = os.path.dirname(os.path.abspath(FLAGS.table))
        cli.check_writable(folder, "table", FLAGS.table)
    if FLAGS.out:
        results.check_appendable(FLAGS.out)


def main(argv: list[str]) -> None:
    del argv
    check_outputs()
    load = evaluation.loader(cli.data_dir(FLAGS.data_dir))
    named = evaluation.sources(FLAGS.workdir, FLAGS.checkpoint)
    folders = evaluation.measure_all(named, load, FLAGS.tta)
    for folder in folders:
        print_folder(folder)
    committee = evaluation.vote(folders, FLAGS.weights)
    record = evaluation.record(committee, FLAGS.checkpoint, cli.command())
    if len(record["members"]) > 1:
        print_committee(record)
    if FLAGS.out:
        results.append([record], FLAGS.out)
    if FLAGS.table:
        header = tables.provenance(record["command"], [record])
        print("table:", results.write_text(FLAGS.table, tables.committee_markdown(record, header)))
    if FLAGS.plot_dir:
        write_figures(committee, load)


if __name__ == "__main__":
    cli.run(main)
