"""Why random initialisation: zero or constant weights leave every hidden unit identical.

Demonstrates symmetry: with every weight equal at the start, every hidden unit receives the same
gradient, so after training they are still copies of one unit (count the distinct columns of the
first weight matrix) and the net is no better than one hidden unit; random initialisation breaks
the symmetry. A 784-64-10 sigmoid MLP, tutorial SGD (lr 0.5, batch 100), --steps steps each.

    python -m experiments.course.init_symmetry --data_dir=../shared/datasets/mnist   # about 20 s

writes runs/teaching/init_symmetry.md.
"""

import dataclasses

from absl import flags

from experiments import cli
from mlp_jax.core import data, train
from mlp_jax.core.config import Config
from mlp_jax.store import results
from mlp_jax.uses import teaching

cli.define_config_flags(only=("data_dir",))
flags.DEFINE_integer("steps", 2000, "Training steps per initialisation.")
flags.DEFINE_string("out", "runs/teaching/init_symmetry.md", "Where to write the table.")
FLAGS = flags.FLAGS
INITS = (
    ("zeros", "zeros"),
    ("constant 0.1", "constant"),
    ("normal 0.01", "normal"),
    ("lecun_normal", "lecun_normal"),
)


def main(argv: list[str]) -> None:
    del argv
    base = Config(
        hidden=(64,),
        act="sigmoid",
        steps=FLAGS.steps,
        eval_every=FLAGS.steps,
        bias_init="zeros",
        data_dir=cli.data_dir(FLAGS.data_dir),
    )
    dataset = data.load(base.dataset, base.data_dir, base.validation_size, base.preprocess)
    lines = [
        "# Symmetry of initialisation",
        "",
        *cli.provenance(),
        "",
        "784-64-10 sigmoid MLP, biases zero, SGD lr 0.5, batch 100.",
        "",
        "| weight initialisation | distinct hidden units (of 64) | test accuracy |",
        "|---|---|---|",
    ]
    for label, init in INITS:
        cfg = dataclasses.replace(base, weight_init=init)
        fit = train.fit(cfg, dataset)
        units = teaching.distinct_units(fit.params["params"]["Dense_0"]["kernel"][0])
        lines.append(f"| {label} | {units} | {fit.test_accuracy[0]:.4f} |")
        print(lines[-1], flush=True)
    results.write_text(FLAGS.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    cli.run(main)
