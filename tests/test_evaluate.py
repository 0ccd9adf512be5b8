"""Evaluating a saved model (experiments.evaluate) and first-layer weight figures."""

import json
import re

import matplotlib.image
import numpy as np
import pytest

from mlp_jax import plots
from tests.conftest import run_module, run_ok


def test_first_layer_weights_draws_the_first_columns(tmp_path):
    kernel = np.random.default_rng(0).normal(size=(784, 100)).astype(np.float32)
    path = plots.first_layer_weights(kernel, str(tmp_path / "w.png"), count=9)
    assert path == str(tmp_path / "w.png")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0.05
    narrow = plots.first_layer_weights(kernel[:, :3], str(tmp_path / "few.png"))  # count > units
    assert matplotlib.image.imread(narrow).size


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> tuple[str, list[dict]]:
    """A two-seed run's work folder and its records."""
    folder = tmp_path_factory.mktemp("saved")
    workdir, out = folder / "w", folder / "r.jsonl"
    run_ok(
        "experiments.mlp",
        "--hidden=32",
        "--steps=200",
        "--eval_every=100",
        "--num_seeds=2",
        f"--workdir={workdir}",
        f"--out={out}",
    )
    return str(workdir), [json.loads(line) for line in out.read_text().splitlines()]


def printed(stdout: str) -> tuple[int, dict[int, tuple[float, float]], float]:
    """Return the step, each seed's exact (validation, test) accuracy and the ensemble's."""
    step = int(re.search(r"checkpoint, step (\d+) of", stdout).group(1))
    seeds = {
        int(seed): (int(vc) / int(vt), int(tc) / int(tt))
        for seed, vc, vt, tc, tt in re.findall(
            r"seed (\d+): val_accuracy \S+ \((\d+)/(\d+)\)  test_accuracy \S+ \((\d+)/(\d+)\)",
            stdout,
        )
    }
    right, total = re.search(r"ensemble of 2: test_accuracy \S+ \((\d+)/(\d+)\)", stdout).groups()
    return step, seeds, int(right) / int(total)


@pytest.mark.slow
def test_evaluate_reproduces_the_recorded_accuracies(saved_run, tmp_path):
    workdir, records = saved_run
    proc = run_ok("experiments.evaluate", f"--workdir={workdir}", f"--plot_dir={tmp_path}")
    step, seeds, ensemble = printed(proc.stdout)
    assert step == 200 and proc.stdout.startswith("mlp-32-relu6: latest checkpoint")
    assert seeds == {r["seed"]: (r["val_accuracy"], r["test_accuracy"]) for r in records}
    # The record holds a float32 mean of the same right answers; one answer more is 1e-4.
    assert ensemble == pytest.approx(records[0]["ensemble_test_accuracy"], abs=1e-6)
    for figure in ("confusion", "misclassified", "first_layer", "curves"):
        assert matplotlib.image.imread(tmp_path / f"mlp-32-relu6_{figure}.png").size


@pytest.mark.slow
def test_evaluate_reads_the_best_checkpoint_and_corruptions(saved_run):
    workdir, records = saved_run
    proc = run_ok(
        "experiments.evaluate", f"--workdir={workdir}", "--checkpoint=best", "--corruptions"
    )
    step, seeds, _ = printed(proc.stdout)
    assert "best checkpoint" in proc.stdout
    for r in records:
        (entry,) = [h for h in r["history"] if h["step"] == step]
        assert seeds[r["seed"]] == (entry["val_accuracy"], entry["test_accuracy"])
    clean = re.search(r"^noise 0 +(\S+)  (\S+)  mean (\S+)$", proc.stdout, re.M).groups()
    assert [float(a) for a in clean[:2]] == [round(seeds[s][1], 4) for s in sorted(seeds)]
    assert re.search(r"^shift 3px +\S+  \S+  mean \S+$", proc.stdout, re.M)


@pytest.mark.slow
def test_evaluate_without_a_run_is_one_error_line(tmp_path):
    proc = run_module("experiments.evaluate", f"--workdir={tmp_path}")
    assert proc.returncode == 2 and not proc.stdout
    assert proc.stderr.strip().splitlines() == [
        f"error: --workdir {str(tmp_path)!r} holds no run (config.json is missing)"
    ]
