"""Small pieces the teaching experiments share: toy data, 1-D regression, gradient norms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlp_jax.core import models, train
from mlp_jax.core.config import Config
from mlp_jax.core.data import Dataset


def toy_datasets(n: int = 400, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return three 2-D two-class sets: linearly separable, XOR-like, concentric circles."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    blobs = rng.normal(0, 0.6, (n, 2)) + np.where(labels[:, None] == 1, 1.5, -1.5)
    corners = rng.uniform(-2, 2, (n, 2))
    xor = (np.sign(corners[:, 0]) != np.sign(corners[:, 1])).astype(int)
    radius = np.where(labels == 1, 2.0, 0.8) + rng.normal(0, 0.15, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    circles = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return {
        "linearly separable": (blobs, labels),
        "xor": (corners, xor),
        "circles": (circles, labels),
    }


def as_dataset(x: np.ndarray, y: np.ndarray, name: str, test_fraction: float = 0.25) -> Dataset:
    """Split arrays into train and test (the test part doubles as validation) on the device."""
    cut = int(len(x) * (1 - test_fraction))
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    return Dataset(
        train_x=x[:cut],
        train_y=y[:cut],
        val_x=x[cut:],
        val_y=y[cut:],
        test_x=x[cut:],
        test_y=y[cut:],
        name=name,
    )


def fit_regression(
    width: int, x: jax.Array, y: jax.Array, steps: int = 4000, seed: int = 0
) -> tuple[models.MLP, dict]:
    """Fit one hidden ReLU layer of `width` units to y(x) by full-batch Adam on squared error."""
    model = models.MLP(hidden=(width,), act="relu", num_classes=1)
    k_init, k_slope, k_kink = jax.random.split(jax.random.key(seed), 3)
    params = model.init(k_init, x)
    # Each unit's kink -b/w at a random point of [0, 1], slope +-1, so no unit starts dead.
    slope = jnp.where(jax.random.bernoulli(k_slope, 0.5, (1, width)), 1.0, -1.0)
    kink = jax.random.uniform(k_kink, (width,))
    params["params"]["Dense_0"] = {"kernel": slope, "bias": -slope[0] * kink}
    tx = optax.adam(optax.cosine_decay_schedule(0.02, steps))

    def step(state, _):
        params, opt_state = state
        grads = jax.grad(lambda p: jnp.mean((model.apply(p, x) - y) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    run = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=steps)[0][0])
    return model, run(params)


def layer_gradient_norms(cfg: Config, params: dict, x: jax.Array, y: jax.Array) -> list[float]:
    """Return the L2 norm of the loss gradient of each layer's weights, input layer first."""
    model = train.make_model(cfg)

    @jax.jit  # one program: op by op, each operation of the deep net's gradient compiles alone
    def norms(p, x, y):
        dense = jax.grad(lambda q: train.loss_value(model.apply(q, x), y, cfg.loss))(p)["params"]
        return [jnp.linalg.norm(dense[f"Dense_{i}"]["kernel"]) for i in range(len(dense))]

    return [float(n) for n in norms(params, x, y)]


def distinct_units(kernel: jax.Array, decimals: int = 6) -> int:
    """Return how many hidden units (kernel columns) differ after rounding."""
    return len(np.unique(np.round(np.asarray(kernel).T, decimals), axis=0))


@functools.cache
def grid(limit: float = 3.0, points: int = 200) -> np.ndarray:
    """Return a points x points grid over [-limit, limit]^2, flattened to (points^2, 2)."""
    axis = np.linspace(-limit, limit, points)
    return np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
