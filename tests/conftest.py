"""Shared fixtures: strict numpy semantics, a tiny synthetic dataset, and real MNIST (the helpers
that tests import are in tests/helpers.py)."""

import os
import shutil
import tempfile

# Tests check what programs compute, not how fast they run, and compiling is most of a small
# test's time: XLA's backend optimisation level 0 halves it, and the CPU's older loop emitters
# (fusion emitters off) take a third off the rest; results stay equal up to float rounding.
# Set before JAX starts, so that the processes the tests start inherit them too.
os.environ["XLA_FLAGS"] = " ".join(
    [
        os.environ.get("XLA_FLAGS", ""),
        "--xla_backend_optimization_level=0",
        "--xla_cpu_use_fusion_emitters=false",
    ]
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


SESSION_CACHE: list[str] = []  # the compilation cache folder, in the process that made it


def pytest_configure(config):
    """Tests train the same tiny programs again and again, in both workers and in the processes
    they start: one JAX persistent compilation cache for the session (made by the first process,
    inherited by the others through the environment) loads a program compiled before."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        SESSION_CACHE.append(tempfile.mkdtemp(prefix="mlp_jax_tests_xla_"))
        os.environ["JAX_COMPILATION_CACHE_DIR"] = SESSION_CACHE[0]
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


# The files that take longest, longest first: each worker takes a whole file at a time
# (pyproject.toml), so a long file started last would keep one worker busy after the other ends.
LONGEST_FIRST = (
    "test_ray.py",
    "test_launch.py",
    "test_search_workers.py",
    "test_evaluate.py",
    "test_experiments.py",
    "test_chain_rule.py",
    "test_bench.py",
    "test_teaching.py",
    "test_augment.py",
    "test_train.py",
    "test_committee.py",
)


def pytest_collection_modifyitems(items):
    """Run the files of LONGEST_FIRST first, in its order; the others after, as collected."""
    items.sort(
        key=lambda item: (
            LONGEST_FIRST.index(item.path.name)
            if item.path.name in LONGEST_FIRST
            else len(LONGEST_FIRST)
        )
    )


def pytest_unconfigure(config):
    """Remove the session's compilation cache, from the process that made it."""
    for folder in SESSION_CACHE:
        shutil.rmtree(folder, ignore_errors=True)
