"""The multilayer perceptron and its initialisers by name."""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlp_jax import activations
from mlp_jax.errors import InputError

Initializer = Callable[..., jax.Array]

WEIGHT_INITS: tuple[str, ...] = (
    "normal",
    "zeros",
    "constant",
    "lecun_normal",
    "glorot_uniform",
    "he_normal",
)
# Fan-based initialisers need a matrix, so biases take only these.
BIAS_INITS: tuple[str, ...] = ("normal", "zeros", "constant")


def initializer(
    name: str, scale: float = 0.01, value: float = 0.1, accepted: Sequence[str] = WEIGHT_INITS
) -> Initializer:
    """Return the initialiser `name`: normal has std `scale`, constant fills with `value`."""
    if name not in accepted:
        raise InputError(f"unknown initialiser {name!r}; accepted: {', '.join(accepted)}")
    inits = jax.nn.initializers
    return {
        "normal": lambda: inits.normal(stddev=scale),
        "zeros": lambda: inits.zeros,
        "constant": lambda: inits.constant(value),
        # The course's N(0, 1) * sqrt(1 / fan_in), untruncated.
        "lecun_normal": lambda: inits.variance_scaling(1.0, "fan_in", "normal"),
        "glorot_uniform": inits.glorot_uniform,
        "he_normal": inits.he_normal,
    }[name]()


class MLP(nn.Module):
    """Dense layers `x @ W + b` with an activation (and dropout) after each hidden one."""

    hidden: tuple[int, ...]
    act: str = "relu"
    dropout: float = 0.0
    input_dropout: float = 0.0
    batch_norm: bool = False  # between each hidden Dense and its activation
    leaky_slope: float = 0.01
    kernel_init: Initializer = jax.nn.initializers.normal(0.01)
    bias_init: Initializer = jax.nn.initializers.normal(0.01)
    num_classes: int = 10
    dtype: jnp.dtype | None = None  # of the matrix products; None: the inputs' and weights'

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Return the logits of a batch of flat images; `train` turns dropout on."""
        if self.input_dropout > 0:
            x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
        for width in self.hidden:
            x = nn.Dense(
                width, dtype=self.dtype, kernel_init=self.kernel_init, bias_init=self.bias_init
            )(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = activations.make(self.act, self.leaky_slope)(x)
            if self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
        )(x)
        return logits if self.dtype is None else logits.astype(jnp.float32)


def count_params(params) -> int:
    """Return the number of scalars in a parameter tree."""
    return sum(int(jnp.size(p)) for p in jax.tree.leaves(params))
