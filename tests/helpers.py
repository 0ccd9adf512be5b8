"""What tests share besides fixtures: the repository root, running entry points as a user would,
and comparing trees."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax.core import data, train
from mlp_jax.core.config import Config
from mlp_jax.core.data import Dataset
from mlp_jax.store import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# CI pins JAX_PLATFORMS=cpu; on a GPU or TPU these tests skip instead of failing.
needs_cpu = pytest.mark.skipif(
    jax.default_backend() != "cpu",
    reason="asserts CPU behaviour (bit-identical reruns, the platform line, host devices)",
)


def run_module(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m module args` from the repository root, as a user would; capture its output.
    Without `env`, in a child of this process's fork server (see SERVER); with it, in a fresh
    interpreter."""
    if not env:
        (proc,) = run_modules([module, *args])
        return proc
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


# A fork server: one interpreter that imported what every entry point imports (JAX, SciPy,
# Matplotlib, Orbax: most of a process's start) and started no JAX backend, so forking it is safe.
# For each line of jobs [[module, *args], ...] it runs every job at once, each in a child forked
# as `python -m module args` runs (runpy makes the module __main__; the child ends as that
# process would, its exit handlers and threads included), and answers a line of [exit code,
# stdout, stderr] per job. A child still running after TIMEOUT seconds is killed (-9).
TIMEOUT = 300
SERVER = f"""
import json, os, runpy, sys, tempfile, time
import experiments.cli, mlp_jax.campaign.plots, mlp_jax.campaign.tables, mlp_jax.uses.evaluation
for line in sys.stdin:
    children = []
    for module, *args in json.loads(line):
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            null = os.open(os.devnull, os.O_RDONLY)
            for fd, to in ((null, 0), (out.fileno(), 1), (err.fileno(), 2)):
                os.dup2(fd, to)
            sys.stdin, sys.argv = open(os.devnull), [module, *args]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            sys.exit(0)  # as a module that returns: the interpreter's own shutdown
        children.append((pid, out, err))
    ended, deadline = [], time.monotonic() + {TIMEOUT}
    for pid, out, err in children:
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
            time.sleep(0.005)
        code = os.waitstatus_to_exitcode(status[1])
        ended.append([code, *(f.seek(0) or f.read().decode() for f in (out, err))])
    print(json.dumps(ended), flush=True)
"""


def environment() -> dict[str, str]:
    """Return the environment a child would see, less the variable pytest changes every test."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


class ForkServer:
    """This test process's fork server (SERVER), started at its first use and again whenever
    the environment changed (JAX read its variables when the server imported it); it ends with
    the end of its input."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.environ: dict[str, str] = {}

    def run(self, jobs: list[list[str]]) -> list[list]:
        """Run `jobs` in the server; return each one's [exit code, stdout, stderr]."""
        if self.process and (self.environ != environment() or self.process.poll() is not None):
            self.process.stdin.close()
            self.process.wait()
            self.process = None
        if self.process is None:
            self.environ = environment()
            self.process = subprocess.Popen(
                [sys.executable, "-c", SERVER], cwd=REPO, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )  # fmt: skip
        self.process.stdin.write(json.dumps(jobs) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the fork server ended"
        return json.loads(line)


FORKS = ForkServer()


def run_modules(*jobs: list[str]) -> list[subprocess.CompletedProcess]:
    """Run each job `[module, *args]` as `python -m module args` from the repository root, all
    at once, each in a child of the fork server (see SERVER); capture each one's output."""
    ended = FORKS.run([list(job) for job in jobs])
    return [
        subprocess.CompletedProcess(job, *result) for job, result in zip(jobs, ended, strict=True)
    ]


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """Encode a uint8 array as an IDX file with the given magic number."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def release_digest(release: str) -> tuple[tuple[str, str], ...]:
    """Return the digest (`Dataset.digest`) that an IDX folder of a known release is read with."""
    return tuple((data.IDX_FILES[key], md5s[0]) for key, md5s in data.KNOWN_MD5[release].items())


def assert_trees_close(a, b, **tolerance) -> None:
    """Assert two parameter trees have the same structure and nearly equal leaves."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tolerance)


def first_replica(tree):
    """Return replica 0 of a tree stacked over replicas."""
    return jax.tree.map(lambda x: x[0], tree)


def diverge(replicas: train.Replica, diverged: list[int | None]) -> train.Replica:
    """Return `replicas` with NaN weights in each replica whose `diverged` step is not None."""
    bad = np.array([step is not None for step in diverged])
    return replicas.replace(
        params=jax.tree.map(
            lambda p: jnp.where(bad.reshape(-1, *[1] * (p.ndim - 1)), jnp.nan, p),
            replicas.params,
        )
    )


def save_diverged(folder, cfg: Config, diverged: list[int | None], dataset: Dataset) -> str:
    """Train `cfg` briefly on `dataset` and save it to a work folder as if the replicas whose
    `diverged` step is not None had diverged there; return the folder."""
    fit = train.fit(cfg, dataset)
    replicas = diverge(fit.replicas, diverged)
    progress = train.Progress(fit.steps, diverged, [[] for _ in diverged], fit.history)
    workdir = checkpoints.Workdir(str(folder), cfg, "test", {}, dataset.digest)
    workdir.restore(replicas)  # writes config.json
    workdir.save(replicas, progress)
    workdir.close()
    return str(folder)


def write_digits(folder, n_train: int, n_test: int, seed: int = 0, noise_test: bool = False) -> str:
    """Write a learnable stand-in for MNIST as four raw IDX files in `folder`: class c lights
    rows 2c..2c+2 of a noisy image (with `noise_test`, the test split is pure noise); return the
    folder."""
    rng = np.random.default_rng(seed)

    def split(n: int, noise: bool) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 100, (n, 28, 28))
        if not noise:
            for i, c in enumerate(labels):
                images[i, 2 * c : 2 * c + 3] += 150
        return images, labels

    os.makedirs(folder, exist_ok=True)
    parts = {"train": split(n_train, False), "test": split(n_test, noise_test)}
    for key, stem in data.IDX_FILES.items():
        which, kind = key.split("_")
        array, magic = (
            (parts[which][0], data.IMAGE_MAGIC)
            if kind == "images"
            else (parts[which][1], data.LABEL_MAGIC)
        )
        with open(os.path.join(folder, stem), "wb") as f:
            f.write(idx_bytes(array, magic))
    return str(folder)
