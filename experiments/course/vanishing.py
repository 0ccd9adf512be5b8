"""Vanishing gradients: per-layer gradient norms of 8-layer sigmoid and ReLU nets on MNIST.

Demonstrates why deep sigmoid nets train slowly: each sigmoid layer multiplies the backward
signal by f' <= 1/4, so the gradient reaching the first layers is orders of magnitude smaller
than at the last, while ReLU (f' = 1 where active) keeps the layers' gradients comparable. Eight
hidden layers of 100 units, lecun_normal weights, SGD lr 0.1, batch 100; gradient norms of each
layer's weights on 1,000 training images at initialisation and after training.

    python -m experiments.course.vanishing --data_dir=../shared/datasets/mnist   # about 30 s

writes runs/teaching/vanishing.{md,png}.
"""

import dataclasses
import functools

from absl import flags
import jax

from experiments import cli
from mlp_jax.campaign import plots
from mlp_jax.core import data, train
from mlp_jax.core.config import Config
from mlp_jax.store import results
from mlp_jax.uses import teaching

cli.define_config_flags(only=("data_dir",))
flags.DEFINE_list("checkpoints", ["100", "1000"], "Training steps after which norms are measured.")
flags.DEFINE_string("out", "runs/teaching/vanishing", "Path stem of the table and figure.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    base = Config(
        hidden=(100,) * 8,
        lr=0.1,
        weight_init="lecun_normal",
        bias_init="zeros",
        data_dir=cli.data_dir(FLAGS.data_dir),
    )
    dataset = data.load(base.dataset, base.data_dir, base.validation_size, base.preprocess)
    x, y = dataset.train_x[:1000], dataset.train_y[:1000]
    norms, lines = {}, []
    for act in ("sigmoid", "relu"):
        cfg = dataclasses.replace(base, act=act)
        tx = train.make_optimizer(cfg, cfg.steps)
        init = jax.jit(functools.partial(train.init_replica, model=train.make_model(cfg), tx=tx))
        initial = init(cfg.seed, dataset).params
        norms[(act, 0)] = teaching.layer_gradient_norms(cfg, initial, x, y)
        for steps in map(int, FLAGS.checkpoints):
            # Constant-lr SGD: a shorter run is the prefix of a longer one with the same seed.
            fit = train.fit(dataclasses.replace(cfg, steps=steps, eval_every=steps), dataset)
            params = jax.tree.map(lambda p: p[0], fit.params)
            norms[(act, steps)] = teaching.layer_gradient_norms(cfg, params, x, y)
            lines.append(f"after {steps} steps, {act}: test accuracy {fit.test_accuracy[0]:.4f}")
    layers = len(base.hidden) + 1
    table = [
        "| net | step | "
        + " | ".join(f"layer {i + 1}" for i in range(layers))
        + " | first / last |",
        "|---|---|" + "---|" * (layers + 1),
    ]
    for (act, steps), values in norms.items():
        table.append(
            f"| {act} | {steps} | "
            + " | ".join(f"{v:.2e}" for v in values)
            + f" | {values[0] / values[-1]:.1e} |"
        )
    results.write_text(
        FLAGS.out + ".md",
        "\n".join(
            [
                "# Gradient norm of each layer's weights, 8 hidden layers of 100",
                "",
                *cli.provenance(),
                "",
                *table,
                "",
                *[f"- {line}" for line in lines],
            ]
        )
        + "\n",
    )
    print("\n".join(table + lines))
    print("wrote", FLAGS.out + ".md", plots.gradient_norms(norms, FLAGS.out + ".png"))


if __name__ == "__main__":
    cli.run(main)
