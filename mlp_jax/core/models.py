"""The multilayer perceptron and its initialisers by name (INITIALIZERS, one entry each)."""

from collections.abc import Callable, Collection
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlp_jax.core import activations
from mlp_jax.core.errors import InputError

Initializer = Callable[..., jax.Array]
_inits = jax.nn.initializers


@dataclasses.dataclass(frozen=True)
class Init:
    """An initialiser built from --init_scale (normal's std) and --init_constant."""

    build: Callable[[float, float], Initializer]
    fan_based: bool = False  # reads the fan-in or fan-out of a matrix, so weights only


INITIALIZERS: dict[str, Init] = {
    "normal": Init(lambda scale, value: _inits.normal(stddev=scale)),
    "zeros": Init(lambda scale, value: _inits.zeros),
    "constant": Init(lambda scale, value: _inits.constant(value)),
    # The course's N(0, 1) * sqrt(1 / fan_in), untruncated.
    "lecun_normal": Init(
        lambda scale, value: _inits.variance_scaling(1.0, "fan_in", "normal"), fan_based=True
    ),
    "glorot_uniform": Init(lambda scale, value: _inits.glorot_uniform(), fan_based=True),
    "he_normal": Init(lambda scale, value: _inits.he_normal(), fan_based=True),
}
BIAS_INITS: tuple[str, ...] = tuple(n for n, init in INITIALIZERS.items() if not init.fan_based)


def initializer(
    name: str, scale: float = 0.01, value: float = 0.1, accepted: Collection[str] = INITIALIZERS
) -> Initializer:
    """Return the initialiser `name`: normal has std `scale`, constant fills with `value`."""
    if name not in accepted:
        raise InputError(f"unknown initialiser {name!r}; accepted: {', '.join(accepted)}")
    return INITIALIZERS[name].build(scale, value)


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
