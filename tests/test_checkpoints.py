"""The work folder: exact resume, refusals, damaged checkpoints, TensorBoard events, loading."""

import dataclasses
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from mlp_jax.core import train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.store import checkpoints, results, runner
from tests.helpers import REPO, assert_trees_close, needs_cpu, release_digest, run_module

TINY = Config(
    hidden=(8,), act="tanh", batch_size=10, steps=60, eval_every=10, num_seeds=2, keep_checkpoints=2
)


def assert_same_replicas(a, b) -> None:
    assert_trees_close(checkpoints.storable(a), checkpoints.storable(b), rtol=0, atol=0)


def open_workdir(path, cfg=TINY, data_digest=()) -> checkpoints.Workdir:
    return checkpoints.Workdir(str(path), cfg, "test", {"jax": jax.__version__}, data_digest)


def fit_into(path, data, cfg=TINY, stop_at=None) -> train.FitResult:
    """Train `cfg` with the work folder `path`, stopping after step `stop_at` if given."""
    workdir = open_workdir(path, cfg, data.digest)
    try:

        def on_eval(evaluation):
            workdir.events.log(evaluation)
            return stop_at is not None and evaluation.step >= stop_at

        return train.fit(cfg, data, on_eval=on_eval, store=workdir)
    finally:
        workdir.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny) -> tuple[str, train.FitResult]:
    """A work folder holding TINY trained to the end (left unchanged: tests copy it)."""
    folder = tmp_path_factory.mktemp("trained")
    return str(folder), fit_into(folder, tiny)


def copy_of(trained, tmp_path) -> str:
    shutil.copytree(trained[0], tmp_path / "w")
    return str(tmp_path / "w")


@needs_cpu
@pytest.mark.parametrize("checkpoint_every, resume_from", [(0, 20), (5, 15)])
def test_an_interrupted_run_resumes_exactly(tmp_path, tiny, trained, checkpoint_every, resume_from):
    """Stopped at step 20 and resumed from there, or from 15, inside an evaluation interval."""
    cfg = dataclasses.replace(TINY, checkpoint_every=checkpoint_every)
    assert fit_into(tmp_path, tiny, cfg, stop_at=20).steps == 20
    for step in os.listdir(tmp_path / "checkpoints"):
        if step.isdigit() and int(step) > resume_from:
            shutil.rmtree(tmp_path / "checkpoints" / step)
    resumed = fit_into(tmp_path, tiny, cfg)
    whole = trained[1]
    assert resumed.steps == 60 and resumed.trained_steps == 60 - resume_from
    assert_same_replicas(resumed.replicas, whole.replicas)
    assert resumed.history == whole.history
    assert resumed.ensemble_test_accuracy == whole.ensemble_test_accuracy


def test_a_finished_run_trains_nothing_when_started_again(tmp_path, tiny, trained):
    again = fit_into(copy_of(trained, tmp_path), tiny)
    assert again.trained_steps == 0 and again.steps == 60


def test_a_finished_run_started_again_returns_what_it_recorded_and_annotates_nothing(
    tmp_path, tiny
):
    calls = []

    def annotate(fit, records):  # a study's fields, different at every call
        calls.append(len(calls))
        for record in records:
            record["annotated_at_call"] = calls[-1]

    out, folder = str(tmp_path / "r.jsonl"), str(tmp_path / "w")
    first = runner.train_and_record(TINY, tiny, out, folder, annotate=annotate)
    again = runner.train_and_record(TINY, tiny, out, folder, annotate=annotate)
    assert calls == [0] and not again.new and again.fit.trained_steps == 0
    assert [r["annotated_at_call"] for r in first.records] == [0, 0]
    assert again.records == results.read(out)  # as the first start wrote them


def test_other_settings_are_refused_naming_them(trained):
    other = dataclasses.replace(TINY, lr=0.1, num_seeds=3, checkpoint_every=5, name="x")
    with pytest.raises(InputError, match=r"other settings: --lr 0.5 \(here 0.1\), --num_seeds 2"):
        open_workdir(trained[0], other)
    open_workdir(trained[0], dataclasses.replace(TINY, checkpoint_every=5, name="x")).close()


def test_one_process_at_a_time(tmp_path):
    first = open_workdir(tmp_path)
    with pytest.raises(InputError, match="is in use by another process"):
        open_workdir(tmp_path)
    first.close()
    open_workdir(tmp_path).close()


def damage(step_folder) -> None:
    for root, _, files in os.walk(step_folder):
        for name in files:
            if "ocdbt" in root or name.startswith("manifest"):
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"damaged")


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tmp_path, tiny, trained):
    folder = copy_of(trained, tmp_path)
    damage(os.path.join(folder, "checkpoints", "60"))
    with pytest.warns(UserWarning, match="checkpoint 60 cannot be read"):
        saved = checkpoints.load(folder)
    assert saved.progress.step == 50
    for step in os.listdir(os.path.join(folder, "checkpoints")):
        damage(os.path.join(folder, "checkpoints", step))
    with warnings.catch_warnings():  # one error line, naming every checkpoint's damage: no more
        warnings.simplefilter("error")
        with pytest.raises(InputError, match="no usable checkpoint: all 3 damaged"):
            checkpoints.load(folder)
    assert len(os.listdir(os.path.join(folder, "checkpoints"))) == 3  # load deletes nothing
    with pytest.raises(InputError, match=r"all 3 damaged .*; delete the folder to train from"):
        fit_into(folder, tiny)
    assert len(os.listdir(os.path.join(folder, "checkpoints"))) == 3  # training neither


@pytest.mark.slow
def test_every_checkpoint_damaged_is_one_error_line(tmp_path, trained, mnist_dir):
    """Training into the folder, and evaluating it with a damaged config.json: one line, exit 2,
    no Orbax or asyncio tracebacks."""
    folder = copy_of(trained, tmp_path)
    for step in os.listdir(os.path.join(folder, "checkpoints")):
        garble(os.path.join(folder, "checkpoints", step))
    settings = json.loads(pathlib.Path(folder, "config.json").read_text())
    settings["data_digest"] = dict(release_digest("mnist")) if mnist_dir else None  # the data here
    pathlib.Path(folder, "config.json").write_text(json.dumps(settings))
    tiny_flags = [
        f"--{k}={v}" for k, v in dataclasses.asdict(TINY).items() if k != "hidden" and v is not None
    ]
    data_flags = [f"--data_dir={mnist_dir}"] if mnist_dir else []
    proc = run_module(
        "experiments.mlp", *tiny_flags, "--hidden=8", *data_flags, f"--workdir={folder}"
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert re.match(
        r"error: .* no usable checkpoint: all 3 damaged .* delete the folder", proc.stderr
    )
    pathlib.Path(folder, "config.json").write_text("{not json")
    proc = run_module("experiments.evaluate", f"--workdir={folder}")
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: {folder}/config.json is damaged (JSONDecodeError: Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1)); it should hold the run's settings "
        "as written by experiments.mlp\n",
    )


def data_file(step_folder) -> str:
    """Return the largest file of a checkpoint: the arrays' data."""
    files = [os.path.join(root, name) for root, _, names in os.walk(step_folder) for name in names]
    return max(files, key=os.path.getsize)


def garble(step_folder) -> None:
    """Overwrite 4 KB inside the checkpoint's data file, leaving its size."""
    with open(data_file(step_folder), "r+b") as f:
        f.seek(8192)
        f.write(np.random.default_rng(0).bytes(4096))


def truncate(step_folder) -> None:
    """Cut the checkpoint's data file to half."""
    path = data_file(step_folder)
    os.truncate(path, os.path.getsize(path) // 2)


def test_a_checkpoint_without_its_digest_is_unfinished(tmp_path, trained):
    """A kill between Orbax's save and the digest's write leaves a checkpoint without one."""
    folder = copy_of(trained, tmp_path)
    os.remove(os.path.join(folder, "checkpoints", "60", checkpoints.DIGEST_FILE))
    with pytest.warns(UserWarning, match="checkpoint 60 cannot be read: it has no digest"):
        assert checkpoints.load(folder).progress.step == 50


@needs_cpu
def test_a_run_killed_before_sealing_its_only_checkpoint_trains_from_step_0(
    tmp_path, tiny, trained
):
    """Killed between Orbax's save of the first checkpoint and its digest (as a Ray task whose
    driver or node dies can be): evaluating refuses it, training deletes it and starts again."""
    assert fit_into(tmp_path, tiny, stop_at=10).steps == 10
    assert os.listdir(tmp_path / "checkpoints") == ["10"]
    os.remove(tmp_path / "checkpoints" / "10" / checkpoints.DIGEST_FILE)
    with pytest.raises(InputError, match=r"no usable checkpoint: all 1 damaged \(10: it has no"):
        checkpoints.load(str(tmp_path))
    with pytest.warns(UserWarning) as caught:
        resumed = fit_into(tmp_path, tiny)
    assert [str(w.message) for w in caught] == [
        f"{tmp_path}: checkpoint 10, the only one, has no digest (the run was killed while "
        "saving it); deleted, training from step 0"
    ]
    assert resumed.trained_steps == 60
    assert_same_replicas(resumed.replicas, trained[1].replicas)
    assert resumed.history == trained[1].history


@needs_cpu
@pytest.mark.parametrize("harm", [garble, truncate])
def test_a_damaged_latest_checkpoint_is_replaced_and_the_run_ends_as_uninterrupted(
    tmp_path, tiny, trained, harm
):
    """The run falls back with one warning, deletes the damaged checkpoint, retrains from 50."""
    folder = copy_of(trained, tmp_path)
    harm(os.path.join(folder, "checkpoints", "60"))
    with pytest.warns(UserWarning) as caught:
        resumed = fit_into(folder, tiny)
    assert len(caught) == 1
    assert re.fullmatch(
        f"{re.escape(folder)}: checkpoint 60 cannot be read: 1 files differ from the digest, "
        "state/ocdbt.process_0/d/[0-9a-f]+ first; "
        "using checkpoint 50, the others deleted",
        str(caught[0].message),
    ), caught[0].message
    whole = trained[1]
    assert resumed.steps == 60 and resumed.trained_steps == 10
    assert_same_replicas(resumed.replicas, whole.replicas)
    assert resumed.history == whole.history
    assert resumed.ensemble_test_accuracy == whole.ensemble_test_accuracy
    with warnings.catch_warnings():  # the new checkpoint 60 is whole: no warning any more
        warnings.simplefilter("error")
        assert_same_replicas(checkpoints.load(folder).replicas, whole.replicas)
        assert fit_into(folder, tiny).trained_steps == 0


def test_a_half_deleted_checkpoint_is_removed_by_training_and_never_warns(
    tmp_path, tiny, trained, caplog
):
    """A kill -9 while Orbax deletes an old checkpoint: some of its files are gone."""
    folder = copy_of(trained, tmp_path)
    half = os.path.join(folder, "checkpoints", "45")
    shutil.copytree(os.path.join(folder, "checkpoints", "50"), half)
    for name in ("_CHECKPOINT_METADATA", "metrics/metrics", "progress/metadata"):
        os.remove(os.path.join(half, name))
    os.remove(data_file(half))
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        assert checkpoints.load(folder).progress.step == 60
        assert os.path.isdir(half)  # loading deletes nothing
        assert fit_into(folder, tiny).trained_steps == 0
    assert not os.path.exists(half)
    assert caplog.records == []  # not Orbax's "Metadata file does not exist"


def test_without_config_json_the_checkpoints_settings_are_checked(tmp_path, trained):
    folder = copy_of(trained, tmp_path)
    os.remove(os.path.join(folder, "config.json"))
    other = dataclasses.replace(TINY, lr=0.1)
    with pytest.raises(InputError, match=r"other settings: --lr 0.5 \(here 0.1\); use those"):
        open_workdir(folder, other)
    open_workdir(folder, dataclasses.replace(TINY, name="x")).close()


@pytest.mark.parametrize(
    "text", ["{not json", "[]", '{"config": {"hidden": [8], "colour": 1}, "train_images": 40}']
)
def test_a_damaged_config_json_is_one_input_error_naming_it(tmp_path, trained, text):
    folder = copy_of(trained, tmp_path)
    pathlib.Path(folder, "config.json").write_text(text)
    for read in (checkpoints.load, lambda f: open_workdir(f).close()):
        with pytest.raises(InputError, match=f"{folder}/config.json is damaged"):
            read(folder)


def test_a_folder_without_a_run_is_refused(tmp_path):
    with pytest.raises(InputError, match="holds no run"):
        checkpoints.load(str(tmp_path))
    with pytest.raises(InputError, match="unknown --checkpoint 'first'"):
        checkpoints.load(str(tmp_path), "first")


def test_keeps_the_latest_and_the_best(trained):
    kept = sorted(
        int(s) for s in os.listdir(os.path.join(trained[0], "checkpoints")) if s.isdigit()
    )
    means = {h["step"]: np.mean(h["val_accuracy"]) for h in trained[1].history}
    best = max(means, key=lambda s: (means[s], -s))
    assert kept == sorted({50, 60, best})
    assert checkpoints.load(trained[0], "best").progress.step == best


def test_load_gives_the_trained_replicas(trained):
    folder, fit = trained
    saved = checkpoints.load(folder)
    assert saved.cfg == TINY and saved.seeds == [0, 1]
    assert_same_replicas(saved.replicas, fit.replicas)
    settings = json.loads(pathlib.Path(folder, "config.json").read_text())
    assert settings["train_images"] == 40 and settings["command"] == "test"


def test_checkpoints_between_evaluations_are_kept_as_the_flag_says(tmp_path, tiny):
    """--checkpoint_every 5 under --eval_every 10: the latest 2 and the best, no more."""
    fit = fit_into(tmp_path, tiny, dataclasses.replace(TINY, checkpoint_every=5))
    kept = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
    means = {h["step"]: np.mean(h["val_accuracy"]) for h in fit.history}
    assert kept == sorted({55, 60, max(means, key=lambda s: (means[s], -s))})


def test_resuming_on_other_data_is_refused_naming_both(tmp_path, tiny):
    """An MNIST run stopped at step 20 and started again on Fashion-MNIST's files."""
    mnist, fashion = (tiny.replace(digest=release_digest(r)) for r in ("mnist", "fashion_mnist"))
    out, folder = str(tmp_path / "r.jsonl"), str(tmp_path / "w")
    runner.train_and_record(TINY, mnist, out, folder, on_eval=lambda e: e.step >= 20)
    refusal = (
        rf"^--workdir {re.escape(repr(folder))} was trained on other data: "
        r"train-images-idx3-ubyte md5 6bbc9ace898e44ae57da46a324031adb \(mnist's\) in the run, "
        r"[0-9a-f]{32} \(fashion_mnist's\) here; accepted: the data it was trained on"
    )
    with pytest.raises(InputError, match=refusal):
        runner.train_and_record(TINY, fashion, out, folder)
    os.remove(os.path.join(folder, "config.json"))  # the checkpoints' digests know the data too
    with pytest.raises(InputError, match=refusal):
        runner.train_and_record(TINY, fashion, out, folder)
    assert runner.train_and_record(TINY, mnist, out, folder).fit.trained_steps == 40


def test_a_folder_made_before_runs_kept_their_data_is_not_checked(tmp_path, tiny, trained):
    folder = copy_of(trained, tmp_path)
    path = pathlib.Path(folder, "config.json")
    settings = json.loads(path.read_text())
    settings.pop("data_digest", None)
    path.write_text(json.dumps(settings))
    other = tiny.replace(digest=release_digest("mnist"))
    assert runner.train_and_record(TINY, other, str(tmp_path / "r.jsonl"), folder).fit.steps == 60


def test_a_config_json_contradicting_the_checkpoints_is_refused_deleting_nothing(
    tmp_path, tiny, trained
):
    """Hidden 4 written over a hidden 8 run: the settings do not match the saved shapes."""
    folder = copy_of(trained, tmp_path)
    path = pathlib.Path(folder, "config.json")
    settings = json.loads(path.read_text())
    settings["config"]["hidden"] = [4]
    path.write_text(json.dumps(settings))
    before = sorted(os.listdir(os.path.join(folder, "checkpoints")))
    refusal = (
        rf"^--workdir {re.escape(repr(folder))}: the settings do not match the saved shapes of "
        r"checkpoint 60, saved under --hidden \[8\] \(here \[4\]\)"
    )
    with warnings.catch_warnings():  # one error line: no warning of damage either
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=refusal):
            checkpoints.load(folder)
        with pytest.raises(InputError, match=refusal):
            fit_into(folder, tiny, dataclasses.replace(TINY, hidden=(4,)))
    assert sorted(os.listdir(os.path.join(folder, "checkpoints"))) == before


def test_a_refused_run_writes_no_settings(tmp_path, tiny, trained):
    """config.json and every digest deleted: a rerun under --lr 0.1 is refused, and the folder
    stays as it was, so the original command is refused for the same reason, not for its lr."""
    folder = copy_of(trained, tmp_path)
    os.remove(os.path.join(folder, "config.json"))
    for step in os.listdir(os.path.join(folder, "checkpoints")):
        os.remove(os.path.join(folder, "checkpoints", step, checkpoints.DIGEST_FILE))
    for cfg in (dataclasses.replace(TINY, lr=0.1), TINY):
        with pytest.raises(InputError, match="no usable checkpoint: all 3 damaged"):
            fit_into(folder, tiny, cfg)
        assert not os.path.exists(os.path.join(folder, "config.json"))


def read_events(folder) -> dict[str, list[tuple[int, float]]]:
    """Read TensorBoard scalars from the event files in `folder` (TFRecord framing)."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for name in sorted(os.listdir(folder)):
        raw = (folder / name).read_bytes()
        while raw:
            (length,) = struct.unpack("<Q", raw[:8])
            event = event_pb2.Event.FromString(raw[12 : 12 + length])
            raw = raw[16 + length :]
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_scalars_per_replica(trained):
    folder, fit = trained
    for r, seed in enumerate(fit.seeds):
        scalars = read_events(pathlib.Path(folder, "tensorboard", f"seed_{seed}"))
        assert set(scalars) >= {
            "train_loss",
            "val_accuracy",
            "test_accuracy",
            "learning_rate",
            "steps_per_sec",
        }
        assert [s for s, _ in scalars["val_accuracy"]] == [h["step"] for h in fit.history]
        np.testing.assert_allclose(
            [v for _, v in scalars["test_accuracy"]],
            [h["test_accuracy"][r] for h in fit.history],
            rtol=1e-6,
        )
        assert {v for _, v in scalars["learning_rate"]} == {0.5}


@pytest.mark.slow
@needs_cpu
def test_a_killed_main_job_resumes_bit_identically(tmp_path, mnist_dir):
    """SIGKILL after the second checkpoint, start again: the same parameters and record as a run
    never interrupted."""
    args = [
        sys.executable,
        "-m",
        "experiments.mlp",
        "--hidden=64",
        "--steps=1200",
        "--eval_every=200",
        "--checkpoint_every=100",
        "--num_seeds=2",
        *([f"--data_dir={mnist_dir}"] if mnist_dir else []),
    ]

    def run(name, kill=False):
        command = [*args, f"--workdir={tmp_path / name}", f"--out={tmp_path / name}.jsonl"]
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        folder = tmp_path / name / "checkpoints"
        while kill and proc.poll() is None:
            if folder.exists() and len([s for s in os.listdir(folder) if s.isdigit()]) >= 2:
                proc.send_signal(signal.SIGKILL)
            time.sleep(0.01)
        out, err = proc.communicate(timeout=300)
        return proc.returncode, out.decode() + err.decode()

    code, output = run("killed", kill=True)
    assert code == -signal.SIGKILL, output
    assert not (tmp_path / "killed.jsonl").exists() or not (tmp_path / "killed.jsonl").read_text()
    code, output = run("killed")
    assert code == 0, output
    code, output = run("whole")
    assert code == 0, output
    killed, whole = (checkpoints.load(str(tmp_path / n)) for n in ("killed", "whole"))
    assert_same_replicas(killed.replicas, whole.replicas)
    timings = {"compile_seconds", "train_seconds", "eval_seconds", "steps_per_sec", "time"}
    records = [
        [
            {k: v for k, v in json.loads(line).items() if k not in timings}
            for line in (tmp_path / f"{n}.jsonl").read_text().splitlines()
        ]
        for n in ("killed", "whole")
    ]
    started = [[r.pop("resumed_from_step") for r in runs] for runs in records]
    assert started[0][0] >= 100 and started[1] == [0, 0]  # where each process began
    assert len(records[0]) == 2 and records[0] == records[1]
