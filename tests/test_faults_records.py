"""Faults at the edges of a run: a record that does not reach --out, too little memory or disk,
and the one line (exit code 2 or 3, no traceback) every entry point ends such a run with."""

import errno
import json
import os
import subprocess
import warnings

import jax
import pytest

from experiments import cli
from mlp_jax.core import memory
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError, MachineError
from mlp_jax.store import checkpoints, results, runner
from tests.helpers import run_module

CFG = Config(hidden=(4,), steps=10, eval_every=10, num_seeds=2)


def finished_records(time: str = "first") -> list[dict]:
    """The records of a finished two-seed run of CFG, made at `time`."""
    return [
        {"name": "r", "seed": s, "steps": 10, "config": {}, "time": time, "test_accuracy": 0.5}
        for s in (0, 1)
    ]


@pytest.fixture
def workdir(tmp_path):
    folder = checkpoints.Workdir(str(tmp_path / "work"), CFG, "cmd", {}, ())
    yield folder
    folder.close()


def test_a_rerun_after_a_failed_append_records_the_run_once(workdir, tmp_path, monkeypatch):
    out = str(tmp_path / "out.jsonl")
    real_append = results.append

    def full_out(records, path):
        if path == out:
            raise MachineError(f"cannot append 2 records to {path}: No space left on device")
        real_append(records, path)

    monkeypatch.setattr(results, "append", full_out)
    with pytest.raises(MachineError, match="No space left on device"):
        runner.record(finished_records("first"), out, workdir)
    monkeypatch.setattr(results, "append", real_append)
    # Started again, the finished run appends what its first start recorded.
    assert runner.record(finished_records("second"), out, workdir) is True
    assert results.read(out) == finished_records("first")
    assert runner.record(finished_records("third"), out, workdir) is False
    assert results.read(out) == finished_records("first")
    assert results.read(os.path.join(workdir.path, "results.jsonl")) == finished_records("first")


def test_out_inside_the_work_folder_gets_the_records_once(workdir):
    out = os.path.join(workdir.path, "results.jsonl")
    assert runner.record(finished_records(), out, workdir) is True
    assert runner.record(finished_records(), out, workdir) is False
    assert results.read(out) == finished_records()


def test_a_second_out_gets_the_records_of_the_first_start(workdir, tmp_path):
    first, second = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    assert runner.record(finished_records("first"), first, workdir) is True
    assert runner.record(finished_records("again"), second, workdir) is True
    assert results.read(second) == results.read(first) == finished_records("first")


# Memory and disk, checked before training.


def test_training_bytes_grow_with_replicas_and_width(tiny):
    one = memory.training_bytes(Config(hidden=(8,)), tiny)
    assert memory.training_bytes(Config(hidden=(8,), num_seeds=4), tiny) == 4 * one
    params = 784 * 8 + 8 + 8 * 10 + 10
    assert one > 2 * 4 * params  # the parameters and a gradient at least
    assert memory.training_bytes(Config(hidden=(800,)), tiny) > 50 * one


def test_a_run_too_big_for_memory_is_refused_naming_both_numbers(tiny, monkeypatch):
    monkeypatch.setattr(memory, "host_available", lambda: 2**30)
    cpu = jax.devices("cpu")[:1]
    memory.check_memory(Config(hidden=(8,)), tiny, cpu)
    with pytest.raises(MachineError) as error:
        memory.check_memory(Config(hidden=(100_000, 100_000)), tiny, cpu)
    assert "the run needs about 75.3 GiB of memory, 1.0 GiB host memory available" in str(
        error.value
    )


def test_host_memory_is_what_meminfo_says_is_available():
    with open("/proc/meminfo", encoding="ascii") as f:
        total = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) * 1024
    assert 0 < memory.host_available() <= total


def test_a_checkpoint_that_does_not_fit_on_the_disk_is_refused(tmp_path):
    memory.check_disk(str(tmp_path), 1)
    with pytest.raises(MachineError, match=f"a checkpoint in {tmp_path} needs about"):
        memory.check_disk(str(tmp_path), 2**60)


# One line and an exit code for every fault.


def exits(capsys, main, *args: str, positional: bool = False) -> tuple[int, str]:
    """Run `main` as cli.run does; return the exit code and the one line it printed."""
    with pytest.raises(SystemExit) as stop:
        cli.guarded(main, ["prog", *args], positional)
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return stop.value.code, err.strip()


def raising(error: Exception):
    def main(argv):
        raise error

    return main


def test_stray_arguments_are_refused(capsys):
    code, line = exits(capsys, lambda argv: None, "625", "441")
    assert code == 2 and line == (
        "error: unexpected argument(s) '625 441'; accepted: flags only (--help lists them)"
    )
    cli.guarded(lambda argv: None, ["prog", "image.png"], positional=True)


@pytest.mark.parametrize(
    "error, line",
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "runs/w/config.json"),
            "cannot write runs/w/config.json: No space left on device",
        ),
        (OSError(errno.EROFS, "Read-only file system", "/r"), "cannot write /r: Read-only"),
        (
            ValueError(
                'RESOURCE_EXHAUSTED: Error writing "state" ...: No space left on device '
                "[os_error_code='28']"
            ),
            "No space left on device: RESOURCE_EXHAUSTED: Error writing",
        ),
        (
            jax.errors.JaxRuntimeError(
                "RESOURCE_EXHAUSTED: Out of memory allocating 4000000000000 bytes.\nmore"
            ),
            "out of memory (RESOURCE_EXHAUSTED: Out of memory allocating 4000000000000 bytes.)",
        ),
        (MachineError("cannot append 1 record to x"), "cannot append 1 record to x"),
    ],
    ids=["ENOSPC", "EROFS", "tensorstore ENOSPC", "XLA out of memory", "MachineError"],
)
def test_faults_of_the_machine_are_one_line_and_exit_3(capsys, error, line):
    code, printed = exits(capsys, raising(error))
    assert code == 3 and printed.startswith(f"error: {line}")


def test_other_errors_are_not_hidden(capsys):
    with pytest.raises(OSError):
        cli.guarded(raising(OSError(errno.ENOENT, "No such file")), ["prog"], False)
    assert exits(capsys, raising(InputError("bad")))[0] == 2


def test_an_unwritable_folder_is_refused_before_anything_runs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match=f"--plot_dir '{blocker}/figs' cannot be written"):
        cli.check_writable(str(blocker / "figs"), "plot_dir", str(blocker / "figs"))
    cli.check_writable(str(tmp_path / "new"), "plot_dir", "new")
    assert (tmp_path / "new").is_dir() and not os.listdir(tmp_path / "new")


def test_table_records_without_a_needed_field_are_skipped_with_a_warning(tmp_path):
    path = tmp_path / "r.jsonl"
    whole = {**finished_records()[0], "diverged": False}
    path.write_text(json.dumps(whole) + "\n" + json.dumps(finished_records()[1]) + "\n")
    with pytest.warns(UserWarning) as caught:
        kept = results.read(str(path), ("test_accuracy", "diverged"))
    assert kept == [whole]
    assert [str(w.message) for w in caught] == [f"{path}:2: skipped, a run record without diverged"]


# Through real processes, on a full disk.


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs (root only), unmounted afterwards."""
    folder = tmp_path / "small"
    folder.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.slow
def test_records_are_never_cut_on_a_full_filesystem(full_disk):
    path, filler = full_disk / "r.jsonl", full_disk / "filler"
    big = {**finished_records()[0], "pad": "x" * 5000}
    appended = 0
    with pytest.raises(MachineError, match="No space left on device; the file is as it was"):
        while True:  # until the disk is full
            results.append([{**big, "seed": appended}] * 2, str(path))
            appended += 1
    assert appended > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every record whole: no line skipped
        kept = results.read(str(path))
    assert [r["seed"] for r in kept] == [s for s in range(appended) for _ in range(2)]
    with pytest.raises(OSError):  # fill what is left, then free some space
        filler.write_bytes(b"0" * 100_000)
    filler.unlink()
    results.append([finished_records("after")[0]], str(path))
    assert results.read(str(path)) == [*kept, finished_records("after")[0]]


TINY_RUN = ("--hidden=16", "--steps=20", "--eval_every=10", "--num_seeds=2")


def one_line(proc: subprocess.CompletedProcess, code: int) -> str:
    """Assert `proc` ended with one error line and exit `code`; return the line."""
    assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.mark.slow
def test_a_run_whose_record_failed_records_it_when_started_again(mnist_dir, tmp_path):
    data_flag = [f"--data_dir={mnist_dir}"] if mnist_dir else []
    out, work = tmp_path / "out.jsonl", str(tmp_path / "work")
    out.symlink_to("/dev/full")
    args = [*TINY_RUN, f"--workdir={work}", f"--out={out}", *data_flag]
    line = one_line(run_module("experiments.mlp", *args), 3)
    assert (
        line
        == f"error: cannot append 2 records to {out}: No space left on device; nothing was written"
    )
    out.unlink()  # the disk has room again
    again = run_module("experiments.mlp", *args)
    assert again.returncode == 0 and "step " not in again.stdout, again.stderr
    first = results.read(os.path.join(work, "results.jsonl"))
    assert results.read(str(out)) == first and len(first) == 2
    third = run_module("experiments.mlp", *args)
    assert "holds this finished run already: nothing trained or recorded" in third.stdout
    assert results.read(str(out)) == first


@pytest.mark.slow
def test_a_work_folder_on_a_full_disk_is_one_line_and_exit_3(mnist_dir, full_disk, tmp_path):
    data_flag = [f"--data_dir={mnist_dir}"] if mnist_dir else []
    proc = run_module(
        "experiments.mlp",
        "--hidden=256",
        "--steps=10",
        f"--workdir={full_disk / 'work'}",
        f"--out={tmp_path / 'out.jsonl'}",
        *data_flag,
    )
    assert "MiB free on its disk" in one_line(proc, 3)


@pytest.mark.slow
def test_table_to_an_unwritable_out_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(finished_records()[0]) + "\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run_module("experiments.table", f"--results={path}", f"--out={blocker}/t.md")
    assert f"--out '{blocker}/t.md' cannot be written" in one_line(proc, 2)


@pytest.mark.slow
def test_evaluate_to_an_unwritable_plot_dir_is_refused_before_loading(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run_module("experiments.evaluate", f"--workdir={tmp_path}", f"--plot_dir={blocker}/figs")
    assert f"--plot_dir '{blocker}/figs' cannot be written" in one_line(proc, 2)
