"""Perceptron against one hidden layer on three 2-D data sets.

Demonstrates why networks need hidden layers: a single layer (softmax regression) draws one
straight boundary, enough for linearly separable blobs but not for XOR or concentric circles;
one hidden layer of 16 tanh units bends the boundary around both.

    python -m experiments.course.toy2d   # about 20 s; runs/teaching/toy2d.{md,png}
"""

from absl import flags
import jax
import numpy as np

from experiments import cli
from mlp_jax.campaign import plots
from mlp_jax.core import train
from mlp_jax.core.config import Config
from mlp_jax.store import results
from mlp_jax.uses import teaching

flags.DEFINE_integer("steps", 2000, "Adam steps per model.")
flags.DEFINE_string("out", "runs/teaching/toy2d", "Path stem of the table (.md) and figure (.png).")
FLAGS = flags.FLAGS
MODELS = (("single layer", ()), ("one hidden layer (16 tanh)", (16,)))


def main(argv: list[str]) -> None:
    del argv
    rows, panels = [], []
    for name, (x, y) in teaching.toy_datasets().items():
        dataset = teaching.as_dataset(x, y, name)
        accuracies = []
        for label, hidden in MODELS:
            cfg = Config(
                hidden=hidden,
                act="tanh",
                optimizer="adam",
                lr=0.05,
                batch_size=50,
                steps=FLAGS.steps,
                eval_every=FLAGS.steps,
                weight_init="glorot_uniform",
                bias_init="zeros",
            )
            fit = train.fit(cfg, dataset)
            accuracies.append(fit.test_accuracy[0])
            params = jax.tree.map(lambda p: p[0], fit.params)
            surface = np.asarray(train.predict(train.make_model(cfg), params, teaching.grid()))
            panels.append(
                {
                    "title": f"{name}: {label}\ntest accuracy {fit.test_accuracy[0]:.3f}",
                    "x": x,
                    "y": y,
                    "surface": surface,
                }
            )
        rows.append(f"| {name} | {accuracies[0]:.3f} | {accuracies[1]:.3f} |")
        print(rows[-1], flush=True)
    results.write_text(
        FLAGS.out + ".md",
        "\n".join(
            [
                "# Single layer against one hidden layer, 2-D data",
                "",
                *cli.provenance(),
                "",
                "| data set | single layer | one hidden layer (16 tanh) |",
                "|---|---|---|",
                *rows,
                "",
                "Test accuracy on a held-out quarter of 400 points.",
            ]
        )
        + "\n",
    )
    print(
        "wrote",
        FLAGS.out + ".md",
        plots.decision_boundaries(panels, teaching.grid(), FLAGS.out + ".png"),
    )


if __name__ == "__main__":
    cli.run(main)
