"""Shared fixtures: strict numpy semantics, a tiny synthetic dataset, and real MNIST (the helpers
that tests import are in tests/helpers.py)."""

import os

# Tests check what programs compute, not how fast they run: XLA's backend optimisation level 0
# halves compile time, most of a small test's time, and leaves results equal up to float rounding.
# Set before JAX starts, so that the processes the tests start inherit it too.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
).strip()
# The two test workers (pyproject.toml) share one GPU where there is one.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import numpy as np
import pytest

from mlp_jax.core import data

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def mnist_dir() -> str | None:
    """The IDX folder named by $MLP_JAX_DATA (None: TFDS), as CI sets it."""
    folder = os.environ.get("MLP_JAX_DATA")
    return os.path.abspath(folder) if folder else None


@pytest.fixture(scope="session")
def mnist(mnist_dir) -> data.Dataset:
    """Real MNIST, 55,000 / 5,000 / 10,000, loaded once per session."""
    return data.load("mnist", mnist_dir, 5000)


@pytest.fixture(scope="session")
def tiny() -> data.Dataset:
    """40 training, 10 validation and 20 test 'images' of 784 random pixels, 10 classes."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 50, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 20, dtype=np.uint8),
    }
    return data.to_device(arrays, validation_size=10, name="tiny")
