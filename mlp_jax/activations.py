"""Activation functions by name."""

from collections.abc import Callable
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlp_jax.errors import InputError

Activation = Callable[[jax.Array], jax.Array]

# Fixed functions. leaky_relu and prelu take a slope and are built by `make`.
FUNCTIONS: dict[str, Activation] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
    "swish": jax.nn.swish,
    "gelu": jax.nn.gelu,
    "identity": lambda x: x,
}
NAMES: tuple[str, ...] = (*FUNCTIONS, "leaky_relu", "prelu")


def check(name: str) -> str:
    """Return `name` if it is a known activation, else raise InputError."""
    if name not in NAMES:
        raise InputError(f"unknown activation {name!r}; accepted: {', '.join(NAMES)}")
    return name


def make(name: str, slope: float = 0.01) -> Activation:
    """Return the activation `name`; call inside a compact Flax method (prelu is a layer)."""
    if check(name) == "leaky_relu":
        return functools.partial(jax.nn.leaky_relu, negative_slope=slope)
    if name == "prelu":
        return nn.PReLU(negative_slope_init=slope)
    return FUNCTIONS[name]
