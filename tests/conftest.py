"""Shared fixtures: strict numpy semantics, a tiny synthetic dataset, and real MNIST."""

import json
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

from mlp_jax.core import data

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


# Runs each job [module, *args] as `python -m module args` does (runpy makes the module
# __main__), in a child forked from one interpreter that imported what every entry point imports
# (JAX, SciPy, Matplotlib, Orbax: most of a process's start); prints each child's exit code,
# stdout and stderr. The parent starts no JAX backend, so forking it is safe.
RUNNER = """
import json, os, runpy, sys, tempfile, traceback
import experiments.cli
children = []
for module, *args in json.load(sys.stdin):
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.argv = [module, *args]
        code = 0
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    children.append((pid, out, err))
ended = []
for pid, out, err in children:
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    ended.append([code, *(f.seek(0) or f.read().decode() for f in (out, err))])
print("ended:", json.dumps(ended))
"""


def run_modules(*jobs: list[str]) -> list[subprocess.CompletedProcess]:
    """Run each job `[module, *args]` as `python -m module args` from the repository root, all
    at once, each in a child of one interpreter (see RUNNER); capture each one's output."""
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(jobs),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ended: ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    ended = json.loads(lines[-1].removeprefix("ended: "))
    return [
        subprocess.CompletedProcess(job, *result) for job, result in zip(jobs, ended, strict=True)
    ]


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
