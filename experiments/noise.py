"""Robustness table: models trained with and without noise or distortions, tested on corrupted
digits.

Each variant trains the recipe given by the flags with a different --augment; every model is then
tested on the whole test set under Gaussian noise (sigma 0 to 0.5), salt-and-pepper noise and
random shifts, the same corrupted images for every model.

    python -m experiments.noise --out_dir=results/robustness RECIPE_FLAGS

With --workdir=DIR each variant trains in its own work folder DIR/NAME, so a second run finds
the finished variants there and trains only the missing ones.
"""

import dataclasses
import functools
import os
import time

from absl import flags

from experiments import cli
from mlp_jax.campaign import plots, tables
from mlp_jax.core import data, train
from mlp_jax.core.config import Config
from mlp_jax.store import results, runner
from mlp_jax.uses import robustness

flags.DEFINE_string("out_dir", "runs/robustness", "Folder for the table, plot and records.")
flags.DEFINE_list(
    "variants",
    ["clean=", "noise=noise", "salt_pepper=salt_pepper", "distortions=affine+elastic"],
    "NAME=AUGMENTATIONS pairs, separated by commas within each by '+'.",
)
cli.define_config_flags()
cli.define_workdir_flag()
FLAGS = flags.FLAGS


def add_corrupted(
    cfg: Config, dataset: data.Dataset, fit: train.FitResult, records: list[dict]
) -> None:
    """Add each replica's test accuracies under every corruption to its record."""
    accuracies = robustness.corrupted_accuracies(cfg, fit.replicas, dataset)
    for r, record in enumerate(records):
        record["corrupted_test_accuracy"] = {k: v[r] for k, v in accuracies.items()}


def train_variant(
    base: Config, variant: str, dataset: data.Dataset, out: str
) -> tuple[dict, list[dict]]:
    """Train and record the variant NAME=AUGMENTATIONS of `base`; return its table row and
    records."""
    name, _, kinds = variant.partition("=")
    cfg = dataclasses.replace(base, name=f"robust_{name}", augment=kinds.replace("+", ","))
    folder = os.path.join(FLAGS.workdir, name) if FLAGS.workdir else None
    annotate = functools.partial(add_corrupted, cfg, dataset)
    _, records, new = runner.train_and_record(
        cfg, dataset, out, folder, annotate=annotate, command=cli.command()
    )
    if not new:
        print(f"{folder} holds this finished variant already: nothing trained or recorded")
    accuracies = {
        kind: [r["corrupted_test_accuracy"][kind] for r in records]
        for kind in records[0]["corrupted_test_accuracy"]
    }
    print(
        f"{name}: "
        + "  ".join(f"{k} {results.summarize(v)[0]:.4f}" for k, v in accuracies.items()),
        flush=True,
    )
    row = {
        "model": name,
        "augment": cfg.augment or "none",
        **{k: results.summarize(v) for k, v in accuracies.items()},
    }
    return row, records


def main(argv: list[str]) -> None:
    del argv
    base, start = cli.config_from_flags(), time.perf_counter()
    records_path = os.path.join(FLAGS.out_dir, "results.jsonl")
    results.check_appendable(records_path)
    dataset = data.load(base.dataset, base.data_dir, base.validation_size, base.preprocess)
    rows, records = [], []
    for variant in FLAGS.variants:
        row, variant_records = train_variant(base, variant, dataset, records_path)
        rows.append(row)
        records += variant_records
    header = tables.provenance(cli.command(), records, time.perf_counter() - start)
    print(
        "wrote",
        tables.write_robustness(rows, FLAGS.out_dir, header),
        plots.robustness(
            rows, robustness.NOISE_STDS, os.path.join(FLAGS.out_dir, "robustness.png")
        ),
    )


if __name__ == "__main__":
    cli.run(main)
