"""Searches whose workers die: killed with kill -9 and started again on the journal file, and two
workers sharing a study on a real PostgreSQL server, one killed mid-trial."""

import dataclasses
import glob
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from experiments import cli
from mlp_jax.campaign import search as searching
from mlp_jax.campaign import space as spaces
from mlp_jax.store import results
from tests.helpers import REPO, write_digits

pytestmark = pytest.mark.slow

SPACE = ("--param=lr=float:0.05:0.5:log",)
# A trial of a few seconds: killed while it trains, after its first checkpoints.
FLAGS = ("--validation_size=50", "--hidden=128,128", "--batch_size=50", "--steps=2000")
FLAGS += ("--eval_every=200",)
TIMINGS = {"compile_seconds", "train_seconds", "eval_seconds", "steps_per_sec", "time"}


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> str:
    """A learnable stand-in for MNIST: 250 training and 60 test images."""
    return write_digits(tmp_path_factory.mktemp("digits"), 250, 60)


def start(out: str, digits: str, *options: str, env: dict | None = None) -> subprocess.Popen:
    """Start `experiments.search tiny` into `out` as its own process group."""
    command = [sys.executable, "-m", "experiments.search", "tiny", *SPACE, f"--out={out}"]
    return subprocess.Popen(
        [*command, *options, "--", *FLAGS, f"--data_dir={digits}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def wait_for_checkpoint(out: str, trial: int, step: int, proc: subprocess.Popen) -> None:
    """Wait until trial `trial` has a sealed checkpoint at `step` or later."""
    folder = os.path.join(out, "work", f"trial_{trial:04d}", "checkpoints")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        sealed = glob.glob(os.path.join(folder, "*", "digest.json"))
        if any(int(path.split(os.sep)[-2]) >= step for path in sealed):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step {step} of trial {trial}")


def kill(proc: subprocess.Popen) -> None:
    """kill -9 the process group of `proc` and reap it."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def comparable(record: dict) -> dict:
    """Return a record without what an interrupted run may change: timings and where it resumed."""
    return {k: v for k, v in record.items() if k not in {*TIMINGS, "resumed_from_step"}}


def test_a_killed_search_resumes_its_trial_and_trains_nothing_twice(tmp_path, digits):
    out = str(tmp_path / "killed")
    killed = start(out, digits, "--trials=2")
    wait_for_checkpoint(out, 0, 600, killed)
    kill(killed)
    # The same command twice at once: one search's workers in one OUT, two trials between them.
    again = [start(out, digits, "--trials=2") for _ in range(2)]
    ended = [proc.communicate(timeout=300) for proc in again]
    assert [proc.returncode for proc in again] == [0, 0], [err for _, err in ended]
    stdout = "".join(text for text, _ in ended)
    search = searching.Search(
        name="tiny",
        space=spaces.merge(spaces.Space(()), [SPACE[0].removeprefix("--param=")]),
        out=str(tmp_path / "whole"),
        trials=1,
        extra=(*FLAGS, f"--data_dir={digits}"),
    )
    searching.work(search, cli.config_from_args, "test", printer=lambda line: None)
    records = searching.trial_records(dataclasses.replace(search, out=out))
    assert len(records) == 2 and len({r["trial"] for r in records}) == 2  # each trained once
    resumed = next(r for r in records if r["trial"] == 0)
    (whole,) = searching.trial_records(search)
    assert resumed["resumed_from_step"] >= 600 and whole["resumed_from_step"] == 0
    assert comparable(resumed) == comparable(whole)
    assert "trial 0: complete" in stdout


POSTGRES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


@pytest.fixture
def postgres():
    """A PostgreSQL server on 127.0.0.1 in a temporary folder, run as the postgres user, whose
    superuser's password is returned with its URL (without the password); stopped after."""
    assert POSTGRES, "PostgreSQL's server is missing: apt-get install postgresql (.ci/run does)"
    folder = pathlib.Path(tempfile.mkdtemp(prefix="mlp_jax_pg_"))  # pytest's are root's alone
    password = "pw-" + os.urandom(6).hex()
    (folder / "pwfile").write_text(password + "\n")
    shutil.chown(folder, "postgres")
    shutil.chown(folder / "pwfile", "postgres")
    bin_dir = POSTGRES[-1]

    def as_postgres(*command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    data_dir = str(folder / "data")
    as_postgres(
        f"{bin_dir}/initdb", "-D", data_dir, "-U", "postgres", "--auth=scram-sha-256",
        f"--pwfile={folder / 'pwfile'}",
    )  # fmt: skip
    port = 20000 + os.getpid() % 20000
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder}"
    log = f"--log={folder / 'server.log'}"  # not our pipe: the server outlives pg_ctl
    as_postgres(f"{bin_dir}/pg_ctl", "-D", data_dir, "-o", options, log, "-w", "start")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres", password
    finally:
        as_postgres(f"{bin_dir}/pg_ctl", "-D", data_dir, "-m", "immediate", "stop")
        shutil.rmtree(folder)


def test_two_workers_share_a_postgres_study_and_one_retries_the_trial_of_the_other(
    tmp_path, digits, postgres
):
    url, password = postgres
    out = str(tmp_path / "shared")
    options = ("--trials=2", "--heartbeat=1")
    first = start(out, digits, f"--storage={url}", *options, env={"PGPASSWORD": password})
    wait_for_checkpoint(out, 0, 400, first)
    # The second worker has the password in its URL: it must show nowhere.
    with_password = url.replace("postgres@", f"postgres:{password}@")
    second = start(out, digits, f"--storage={with_password}", *options)
    kill(first)
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    records = results.read(os.path.join(out, "results.jsonl"))
    # A retry keeps the number of the trial it retries (its work folder's); its own is skipped.
    assert len(records) == 2 and len({r["trial"] for r in records}) == 2
    retried = next(r for r in records if r["trial"] == 0)
    assert retried["resumed_from_step"] >= 400 and retried["trial_state"] == "complete"
    assert "trial 0: complete" in stdout
    written = [path for path in glob.glob(f"{out}/**", recursive=True) if os.path.isfile(path)]
    for path in written:
        with open(path, "rb") as f:
            assert password.encode() not in f.read(), path
    assert password not in stdout + stderr
