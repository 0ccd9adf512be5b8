"""Every activation and its derivative: the hand-written derivative, with autodiff's overlaid.

Demonstrates what each non-linearity does to a pre-activation z and how much gradient it lets
through (sigmoid and tanh saturate; relu passes 1 or 0; relu6 also caps at 6), and that each
hand-written derivative in mlp_jax/core/chain_rule.py lies on jax.grad's.

    python -m experiments.course.activation_gallery  # seconds; runs/teaching/activations.png
"""

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import cli
from mlp_jax.campaign import plots
from mlp_jax.core import activations, chain_rule

flags.DEFINE_string("out", "runs/teaching/activations.png", "Where to write the figure.")
FLAGS = flags.FLAGS


def curves() -> list[dict]:
    """Return, per activation, z, f(z), the hand-written f'(z) and autodiff's f'(z)."""
    z = jnp.linspace(-7.0, 7.0, 561)
    out = []
    for name in chain_rule.DERIVATIVES:
        f = activations.make(name)
        a = f(z)
        out.append(
            {
                "name": name,
                "z": np.asarray(z),
                "f": np.asarray(a),
                "manual": np.asarray(chain_rule.DERIVATIVES[name](z, a, 0.01)),
                "autodiff": np.asarray(jax.vmap(jax.grad(f))(z)),
            }
        )
    return out


def main(argv: list[str]) -> None:
    del argv
    gallery = curves()
    worst = max(float(np.abs(c["manual"] - c["autodiff"]).max()) for c in gallery)
    print(f"largest |manual - autodiff| derivative over z in [-7, 7]: {worst:.2e}")
    print("wrote", plots.activation_gallery(gallery, FLAGS.out))


if __name__ == "__main__":
    cli.run(main)
