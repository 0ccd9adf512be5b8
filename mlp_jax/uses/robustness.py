"""Accuracy on a corrupted test set: Gaussian noise, salt-and-pepper, random shifts."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core import augment, train
from mlp_jax.core.config import Config
from mlp_jax.core.data import Dataset

NOISE_STDS = (0.0, 0.1, 0.2, 0.3, 0.5)
SALT_PEPPER = (0.05, 0.1, 0.2)
SHIFTS = (1.0, 2.0, 3.0)  # pixels, uniform in [-shift, shift] along each axis


def corruptions() -> dict[str, augment.Augment]:
    """Return every test-set corruption by its column name."""
    still = augment.Strengths(rotate=0.0, scale=0.0, shear=0.0)
    table = {
        f"noise {std:g}": functools.partial(augment.gaussian_noise, std=std) for std in NOISE_STDS
    }
    table |= {
        f"salt&pepper {a:g}": functools.partial(augment.salt_and_pepper, amount=a)
        for a in SALT_PEPPER
    }
    table |= {
        f"shift {s:g}px": augment.make(("affine",), dataclasses.replace(still, translate=s))
        for s in SHIFTS
    }
    return table


def corrupted_accuracies(
    cfg: Config, replicas: train.Replica, data: Dataset, seed: int = 0
) -> dict[str, list[float]]:
    """Return, per corruption, every replica's accuracy on the whole corrupted test set."""
    model = train.make_model(cfg)

    @jax.jit
    def correct(corrupted_x):
        def one(rep):
            return jnp.sum(train.predict(model, train.eval_params(rep), corrupted_x) == data.test_y)

        return jax.vmap(one)(replicas)

    key = jax.random.key(seed)  # the same corrupted images for every model
    return {
        name: train.fraction(
            np.asarray(correct(corrupt(key, data.test_x))), len(data.test_y)
        ).tolist()
        for name, corrupt in corruptions().items()
    }
