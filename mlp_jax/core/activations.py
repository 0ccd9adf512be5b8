"""Activation functions by name: BUILDERS maps each name to what builds it from the slope."""

from collections.abc import Callable
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlp_jax.core.errors import InputError

Activation = Callable[[jax.Array], jax.Array]


def fixed(f: Activation) -> Callable[[float], Activation]:
    """Return the builder of an activation that takes no slope."""
    return lambda slope: f


BUILDERS: dict[str, Callable[[float], Activation]] = {
    "relu": fixed(jax.nn.relu),
    "relu6": fixed(jax.nn.relu6),
    "sigmoid": fixed(jax.nn.sigmoid),
    "tanh": fixed(jnp.tanh),
    "elu": fixed(jax.nn.elu),
    "softplus": fixed(jax.nn.softplus),
    "swish": fixed(jax.nn.swish),
    "gelu": fixed(jax.nn.gelu),
    "identity": fixed(lambda x: x),
    "leaky_relu": lambda slope: functools.partial(jax.nn.leaky_relu, negative_slope=slope),
    "prelu": lambda slope: nn.PReLU(negative_slope_init=slope),  # a layer: its slope is learned
}
NAMES: tuple[str, ...] = tuple(BUILDERS)


def check(name: str) -> str:
    """Return `name` if it is a known activation, else raise InputError."""
    if name not in BUILDERS:
        raise InputError(f"unknown activation {name!r}; accepted: {', '.join(BUILDERS)}")
    return name


def make(name: str, slope: float = 0.01) -> Activation:
    """Return the activation `name`; call inside a compact Flax method (prelu is a layer)."""
    return BUILDERS[check(name)](slope)
