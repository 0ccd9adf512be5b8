"""Shared fixtures: strict numpy semantics, a tiny synthetic dataset, and real MNIST."""

import os
import subprocess
import sys

# Tests check what programs compute, not how fast they run: XLA's backend optimisation level 0
# halves compile time, most of a small test's time, and leaves results equal up to float rounding.
# Set before JAX starts, so that the processes the tests start inherit it too.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
).strip()
# The two test workers (pyproject.toml) share one GPU where there is one.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax import data

jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# CI pins JAX_PLATFORMS=cpu; on a GPU or TPU these tests skip instead of failing.
needs_cpu = pytest.mark.skipif(
    jax.default_backend() != "cpu",
    reason="asserts CPU behaviour (bit-identical reruns, the platform line, host devices)",
)


def run_module(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m module args` from the repository root, as a user would; capture its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def run_ok(module: str, *args: str) -> subprocess.CompletedProcess:
    """Run `python -m module args` and assert it succeeds."""
    proc = run_module(module, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


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


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """Encode a uint8 array as an IDX file with the given magic number."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def assert_trees_close(a, b, **tolerance) -> None:
    """Assert two parameter trees have the same structure and nearly equal leaves."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tolerance)


def first_replica(tree):
    """Return replica 0 of a tree stacked over replicas."""
    return jax.tree.map(lambda x: x[0], tree)


__all__ = ["assert_trees_close", "first_replica", "idx_bytes", "jnp"]
