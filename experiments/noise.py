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
import os
import time

from absl import flags

from experiments import cli
from mlp_jax import data, plots, results, robustness, tables, train

flags.DEFINE_string("out_dir", "runs/robustness", "Folder for the table, plot and records.")
flags.DEFINE_list(
    "variants",
    ["clean=", "noise=noise", "salt_pepper=salt_pepper", "distortions=affine+elastic"],
    "NAME=AUGMENTATIONS pairs, separated by commas within each by '+'.",
)
cli.define_config_flags()
cli.define_workdir_flag()
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    base, start = cli.config_from_flags(), time.perf_counter()
    records_path = os.path.join(FLAGS.out_dir, "results.jsonl")
    results.check_appendable(records_path)
    dataset = data.load(base.dataset, base.data_dir, base.validation_size)
    rows, records = [], []
    for variant in FLAGS.variants:
        name, _, kinds = variant.partition("=")
        cfg = dataclasses.replace(base, name=f"robust_{name}", augment=kinds.replace("+", ","))
        folder = os.path.join(FLAGS.workdir, name) if FLAGS.workdir else None
        workdir = cli.open_workdir(folder, cfg)
        fit = train.fit(cfg, dataset, store=workdir)
        accuracies = robustness.corrupted_accuracies(cfg, fit.replicas, dataset)
        variant_records = results.run_records(cfg, fit, cfg.dataset, dataset.digest)
        for r, record in enumerate(variant_records):
            record["corrupted_test_accuracy"] = {k: v[r] for k, v in accuracies.items()}
        if not cli.record(variant_records, records_path, workdir):
            print(f"{folder} holds this finished variant already: nothing trained or recorded")
        if workdir:
            workdir.close()
        records += variant_records
        rows.append(
            {
                "model": name,
                "augment": cfg.augment or "none",
                **{k: results.summarize(v) for k, v in accuracies.items()},
            }
        )
        print(
            f"{name}: "
            + "  ".join(f"{k} {results.summarize(v)[0]:.4f}" for k, v in accuracies.items()),
            flush=True,
        )
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
