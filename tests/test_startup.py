"""Runs that start fast: a run imports only what it uses, and a second run of the same programs
loads them from JAX's persistent compilation cache instead of compiling them."""

import dataclasses
import os
import subprocess
import sys

import jax
from jax.experimental.compilation_cache import compilation_cache
import numpy as np
import pytest

from mlp_jax.campaign import launcher
from mlp_jax.core import train
from mlp_jax.core.config import Config
from tests.helpers import REPO, needs_cpu
from tests.test_cli import check_one_line_error, run_in_process

# What a training run never uses: each costs from a quarter of a second to seconds to import.
UNUSED_BY_A_RUN = ("scipy", "matplotlib", "tensorflow", "tensorflow_datasets", "optuna")


def test_a_run_imports_no_library_it_does_not_use():
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, experiments.mlp; print(' '.join(m for m in sys.modules if '.' not in m))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert "jax" in loaded
    assert [name for name in UNUSED_BY_A_RUN if name in loaded] == []


@pytest.fixture
def cache_hits(tmp_path):
    """Keep compiled programs in a fresh cache folder for one test; yield the list of cache hits
    JAX reports, and leave JAX's settings as they were."""
    saved = {
        name: jax.config.values[name]
        for name in (
            "jax_compilation_cache_dir",
            "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes",
        )
    }
    hits = []

    def count(event: str, **kwargs) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            hits.append(event)

    jax.monitoring.register_event_listener(count)
    compilation_cache.reset_cache()  # the test session's own cache (conftest) may be open
    try:
        yield hits
    finally:
        jax.monitoring.unregister_event_listener(count)
        for name, value in saved.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


CACHED = Config(hidden=(8,), steps=4, eval_every=2, batch_size=5, validation_size=10)


def first_cached_run(data, tmp_path) -> tuple[str, train.FitResult]:
    """Train CACHED with a fresh persistent compilation cache; return its folder and the fit."""
    folder = str(tmp_path / "compilation_cache")
    train.cache_compilations(folder)
    return folder, train.fit(CACHED, data)


@needs_cpu
def test_a_second_run_loads_its_programs_from_the_cache(tiny, tmp_path, cache_hits):
    folder, first = first_cached_run(tiny, tmp_path)
    written = sorted(os.listdir(folder))
    assert written and cache_hits == []
    # A new config object builds new programs, as a new process would: no in-memory cache helps.
    second = train.fit(dataclasses.replace(CACHED, name="again"), tiny)
    assert len(cache_hits) >= 2  # evaluation and the training chunk at least
    assert sorted(os.listdir(folder)) == written  # nothing compiled anew
    np.testing.assert_array_equal(second.test_accuracy, first.test_accuracy)
    np.testing.assert_array_equal(second.train_loss, first.train_loss)


def test_every_run_of_a_launch_shares_one_cache_under_its_folder(tmp_path):
    out = str(tmp_path / "study")
    rows = [launcher.Row("a", ("--steps=3",), {}), launcher.Row("b", ("--steps=4",), {})]
    plan = launcher.missing_runs(rows, [], launcher.Launch("g", out, seeds=1))
    flags = {arg for runs in plan for run in runs for arg in run.command}
    assert f"--compilation_cache={os.path.join(out, 'compilation_cache')}" in flags


@needs_cpu
def test_a_damaged_cache_entry_is_compiled_again_with_a_warning(tiny, tmp_path, cache_hits):
    folder, first = first_cached_run(tiny, tmp_path)
    for name in os.listdir(folder):  # as a run killed while writing them would leave them
        path = os.path.join(folder, name)
        os.truncate(path, os.path.getsize(path) // 2)
    with pytest.warns(UserWarning, match="Error reading persistent compilation cache entry"):
        second = train.fit(dataclasses.replace(CACHED, name="again"), tiny)
    assert cache_hits == []
    np.testing.assert_array_equal(second.test_accuracy, first.test_accuracy)


def test_an_unwritable_compilation_cache_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    proc = run_in_process(
        monkeypatch, capsys, "--steps=1", f"--compilation_cache={tmp_path / 'file' / 'cache'}"
    )
    check_one_line_error(proc, "--compilation_cache")
