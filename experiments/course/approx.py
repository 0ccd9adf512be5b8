"""Universal approximation: one hidden ReLU layer of width K fitted to a Lipschitz function.

Demonstrates that a single hidden layer approximates a continuous function on [0, 1] as closely
as wanted given enough units: the maximum error of the fitted piecewise-linear curve shrinks as K
grows. Target f(x) = sin(2 pi x) + |x - 0.5| (Lipschitz, with a kink), 200 training points,
full-batch Adam; error measured on 2,000 points.

    python -m experiments.course.approx   # about 30 s; runs/teaching/approx.{md,png}
"""

from absl import flags
import jax.numpy as jnp
import numpy as np

from experiments import cli
from mlp_jax.campaign import plots
from mlp_jax.store import results
from mlp_jax.uses import teaching

flags.DEFINE_list("widths", ["1", "2", "4", "8", "16", "32", "64", "128"], "Hidden widths K.")
flags.DEFINE_integer("steps", 4000, "Adam steps per width.")
flags.DEFINE_string(
    "out", "runs/teaching/approx", "Path stem of the table (.md) and figure (.png)."
)
FLAGS = flags.FLAGS


def target(x):
    """The function to approximate."""
    return jnp.sin(2 * jnp.pi * x) + jnp.abs(x - 0.5)


def main(argv: list[str]) -> None:
    del argv
    x_train = jnp.linspace(0, 1, 200)[:, None]
    x_test = jnp.linspace(0, 1, 2000)[:, None]
    rows, fits = [], {}
    for width in map(int, FLAGS.widths):
        model, params = teaching.fit_regression(width, x_train, target(x_train), FLAGS.steps)
        fitted = model.apply(params, x_test)
        error = float(jnp.abs(fitted - target(x_test)).max())
        fits[width] = (np.asarray(fitted[:, 0]), error)
        rows.append(f"| {width} | {error:.4f} |")
        print(rows[-1], flush=True)
    results.write_text(
        FLAGS.out + ".md",
        "\n".join(
            [
                "# One hidden ReLU layer approximating f(x) = sin(2 pi x) + |x - 0.5| on [0, 1]",
                "",
                *cli.provenance(),
                "",
                "| hidden units K | max abs error on 2,000 points |",
                "|---|---|",
                *rows,
            ]
        )
        + "\n",
    )
    print(
        "wrote",
        FLAGS.out + ".md",
        plots.approximation(
            np.asarray(x_test[:, 0]), np.asarray(target(x_test[:, 0])), fits, FLAGS.out + ".png"
        ),
    )


if __name__ == "__main__":
    cli.run(main)
