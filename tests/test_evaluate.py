"""Evaluating a saved model (experiments.evaluate) and first-layer weight figures."""

import dataclasses
import json
import os
import pathlib
import re

import jax.numpy as jnp
import matplotlib.image
import numpy as np
from PIL import Image, ImageDraw
import pytest

from experiments import cli
from mlp_jax.campaign import plots
from mlp_jax.core import data, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.store import checkpoints, runner
from mlp_jax.uses import evaluation
from tests.helpers import diverge, idx_bytes, run_module, run_modules, run_ok, save_diverged
from tests.test_data import write_folder


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
    right, total = re.search(
        r"ensemble of 2 of 2 finished replicas: val_accuracy \S+ \(\d+/\d+\)  "
        r"test_accuracy \S+ \((\d+)/(\d+)\)",
        stdout,
    ).groups()
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


TINY = Config(hidden=(16,), act="relu", batch_size=10, steps=20, eval_every=20, num_seeds=2)


def saved_in_memory(cfg: Config, replicas: train.Replica, diverged: list) -> checkpoints.Saved:
    """Return replicas as if read back from a work folder whose run diverged at `diverged`."""
    progress = train.Progress(cfg.steps, diverged, [[] for _ in diverged], [])
    return checkpoints.Saved(cfg, replicas, progress, train.replica_seeds(cfg))


def test_the_committee_of_a_saved_model_leaves_out_diverged_replicas(tiny):
    fresh = train.init_replicas(TINY, jnp.arange(2), tiny)
    digits = np.asarray(tiny.test_x).reshape(-1, 28, 28)
    some = saved_in_memory(TINY, diverge(fresh, [3, None]), [3, None])
    probs, members = evaluation.committee(["w"], [some], digits)
    np.testing.assert_array_equal(members, [False, True])
    np.testing.assert_array_equal(probs, train.probabilities(TINY, fresh, tiny.test_x)[1])
    every = saved_in_memory(TINY, diverge(fresh, [3, 5]), [3, 5])
    with pytest.raises(InputError, match=r"^--workdir 'w': every replica diverged \(2 of 2\)"):
        evaluation.committee(["w"], [every], digits)


@pytest.mark.slow
def test_evaluate_and_predict_leave_out_diverged_replicas(tmp_path):
    folder = write_folder(tmp_path / "data", n_train=50, n_test=20)
    cfg = dataclasses.replace(TINY, num_seeds=3, data_dir=folder, validation_size=10)
    dataset = data.load(cfg.dataset, folder, cfg.validation_size)
    some = save_diverged(tmp_path / "some", cfg, [None, 7, None], dataset)
    proc = run_ok("experiments.evaluate", f"--workdir={some}", f"--data_dir={folder}")
    assert re.search(r"^seed 1: .*\(diverged at step 7\)$", proc.stdout, re.M)
    right = re.search(
        r"^ensemble of 2 of 3 finished replicas: val_accuracy \S+ \(\d+/10\)  "
        r"test_accuracy \S+ \((\d+)/20\)$",
        proc.stdout,
        re.M,
    ).group(1)
    probs = train.probabilities(cfg, checkpoints.load(some).replicas, dataset.test_x)
    members = np.array([True, False, True])
    assert int(right) / 20 == train.ensemble_accuracy(probs, dataset.test_y, members)

    image = tmp_path / "one.png"
    picture = Image.new("L", (60, 80), 255)
    ImageDraw.Draw(picture).line([(30, 10), (30, 70)], fill=0, width=6)
    picture.save(image)
    proc = run_ok("experiments.predict", f"--workdir={some}", str(image))
    assert "ensemble of 2 of 3 finished replicas" in proc.stderr and "nan" not in proc.stdout
    assert re.fullmatch(rf"{image}: (\d \(\d\.\d{{3}}\)  ){{2}}\d \(\d\.\d{{3}}\)\n", proc.stdout)

    every = save_diverged(tmp_path / "every", cfg, [5, 7, 9], dataset)
    proc = run_module("experiments.predict", f"--workdir={every}", str(image))
    assert proc.returncode == 2 and not proc.stdout and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        f"error: --workdir {every!r}: every replica diverged (3 of 3); there is no finished "
        "model to use"
    ]


def digit_image(path) -> str:
    """Draw a one on light paper at `path`."""
    picture = Image.new("L", (60, 80), 255)
    ImageDraw.Draw(picture).line([(30, 10), (30, 70)], fill=0, width=6)
    picture.save(path)
    return str(path)


def small_run(tmp_path, data_dir: str, workdir: str, *extra: str) -> list[str]:
    """Return the flags of a 20-step run of experiments.mlp on `data_dir` into `workdir`."""
    return [
        "experiments.mlp",
        "--hidden=16",
        "--steps=20",
        "--eval_every=10",
        "--batch_size=10",
        "--validation_size=10",
        f"--data_dir={data_dir}",
        f"--workdir={workdir}",
        f"--out={tmp_path / 'runs.jsonl'}",
        *extra,
    ]


def train_as_mlp(args: list[str]) -> None:
    """Train in process the run that `python -m experiments.mlp ARGS` trains and records."""
    paths = {"--workdir": None, "--out": None}
    for arg in args:
        paths.update({flag: arg.split("=", 1)[1] for flag in paths if arg.startswith(flag)})
    cfg = cli.config_from_args([arg for arg in args if arg.split("=")[0] not in paths])
    dataset = data.load(cfg.dataset, cfg.data_dir, cfg.validation_size, cfg.preprocess)
    runner.train_and_record(cfg, dataset, paths["--out"], paths["--workdir"])


@pytest.mark.slow
def test_a_run_on_other_data_files_is_refused_by_every_entry_point(tmp_path):
    """Resuming, evaluating and a committee's prediction on other files of the same layout."""
    ours = write_folder(tmp_path / "ours", n_train=60, n_test=20)
    images = np.random.default_rng(9).integers(0, 256, (60, 28, 28))
    theirs = write_folder(
        tmp_path / "theirs", 60, 20, train_images=idx_bytes(images, data.IMAGE_MAGIC)
    )
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train_as_mlp(small_run(tmp_path, ours, a)[1:])
    train_as_mlp(small_run(tmp_path, theirs, b)[1:])
    refused = run_modules(
        small_run(tmp_path, theirs, a),
        ["experiments.evaluate", f"--workdir={a}", f"--data_dir={theirs}"],
        [
            "experiments.predict",
            f"--workdir={a}",
            f"--workdir={b}",
            digit_image(tmp_path / "1.png"),
        ],
    )
    for proc, whose in zip(refused, [a, a, b], strict=True):
        assert (proc.returncode, proc.stdout.count("accuracy")) == (2, 0), proc.stderr
        assert re.fullmatch(
            rf"error: --workdir {re.escape(repr(whose))} was trained on other data[^\n]*"
            r"train-images-idx3-ubyte md5 [0-9a-f]{32} in the run, [0-9a-f]{32} [^\n]*\n",
            proc.stderr,
        ), proc.stderr


@pytest.mark.slow
def test_a_config_json_contradicting_the_checkpoints_is_one_line_for_every_entry_point(tmp_path):
    """Hidden 8 written over a hidden 16 run: one line, exit 2, no Orbax tracebacks after it,
    every checkpoint left."""
    ours = write_folder(tmp_path / "data", n_train=60, n_test=20)
    folder = str(tmp_path / "w")
    train_as_mlp(small_run(tmp_path, ours, folder)[1:])
    path = pathlib.Path(folder, "config.json")
    settings = json.loads(path.read_text())
    settings["config"]["hidden"] = [8]
    path.write_text(json.dumps(settings))
    kept = sorted(os.listdir(os.path.join(folder, "checkpoints")))
    for proc in run_modules(
        ["experiments.evaluate", f"--workdir={folder}"],
        ["experiments.predict", f"--workdir={folder}", digit_image(tmp_path / "1.png")],
        small_run(tmp_path, ours, folder, "--hidden=8"),
    ):
        assert proc.returncode == 2, proc.stderr
        assert re.fullmatch(
            rf"error: --workdir {re.escape(repr(folder))}: the settings do not match the saved "
            r"shapes of checkpoint 20, saved under --hidden \[16\] \(here \[8\]\)[^\n]*\n",
            proc.stderr,
        ), proc.stderr[-3000:]
    assert sorted(os.listdir(os.path.join(folder, "checkpoints"))) == kept
