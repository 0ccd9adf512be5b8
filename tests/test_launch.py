"""launch.sh end to end: a whole grid in seconds, resuming after a kill, two launches at once,
listing, bad input."""

import collections
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from mlp_jax import grids, results
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # every test starts launch.sh
ROWS = len(grids.get("seed_table"))


ENV = {**os.environ, "PYTHON": sys.executable}  # the interpreter running the tests


def launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [os.path.join(REPO, "launch.sh"), *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=600,
        env=ENV,
    )


def count_records(path) -> int:
    return len(results.read(path)) if os.path.exists(path) else 0


def launch_killed_after_two_records(args: list[str], path: str) -> int:
    """Start `launch.sh args`, stop it (and its runs) once `path` holds two records; return how
    many it holds then."""
    first = subprocess.Popen(
        [os.path.join(REPO, "launch.sh"), *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=ENV,
    )
    deadline = time.time() + 300
    while count_records(path) < 2 and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGTERM)
    first.wait(timeout=60)
    return count_records(path)


def test_killed_launch_resumes_without_lost_or_duplicate_records(tmp_path, mnist_dir):
    out = tmp_path / "grid"
    args = ["seed_table", "--seeds", "1", "--out", str(out), "--", "--steps=50"]
    path = str(out / "results.jsonl")
    killed_at = launch_killed_after_two_records(args, path)
    assert 2 <= killed_at < ROWS

    resumed = launch(*args[:5], "--jobs", "2", *args[5:])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{ROWS - killed_at} row(s) to run" in resumed.stdout
    assert f"({ROWS - killed_at}/{ROWS - killed_at}, elapsed " in resumed.stdout
    records = results.read(path)
    names = collections.Counter(r["name"] for r in records)
    assert names == {row.name: 1 for row in grids.get("seed_table")}
    for ext in ("md", "csv", "json", "tex", "png"):
        assert (out / f"table.{ext}").stat().st_size > 0
    table = (out / "table.md").read_text()
    assert table.startswith("Command: `./launch.sh seed_table") and "Total wall time" in table
    assert sum(line.startswith("| t1_") for line in table.splitlines()) == ROWS

    again = launch(*args)
    assert again.returncode == 0 and "nothing to run" in again.stdout
    assert count_records(path) == ROWS

    # Other settings are other runs: they are not taken for complete.
    pending = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.grid",
            "--grid=seed_table",
            f"--out={out}",
            "--pending",
            "--",
            "--steps=60",
        ],
        cwd=REPO,
        text=True,
        capture_output=True,
        check=True,
    )
    assert len(pending.stdout.splitlines()) == ROWS


def test_two_launches_into_one_folder_train_each_row_once(tmp_path):
    args = ["seed_table", "--row", "1", "--seeds", "2", "--out", str(tmp_path), "--", "--steps=20"]
    launches = [
        subprocess.Popen(
            [os.path.join(REPO, "launch.sh"), *args],
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=600) for proc in launches]
    assert [proc.returncode for proc in launches] == [0, 0], outputs
    runs = collections.Counter(
        (r["name"], r["seed"]) for r in results.read(str(tmp_path / "results.jsonl"))
    )
    assert runs == {("t1_01_softmax", 0): 1, ("t1_01_softmax", 1): 1}
    assert sum("nothing to run" in stdout for stdout, _ in outputs) == 1
    assert sum(f"waiting for another launch.sh writing {tmp_path}" in e for _, e in outputs) == 1


def test_list_prints_one_full_command_per_row(tmp_path):
    listed = launch("seed_table", "--seeds", "5", "--out", str(tmp_path), "--list")
    commands = listed.stdout.splitlines()
    assert listed.returncode == 0 and len(commands) == ROWS
    assert all(
        "-m experiments.mlp --name=t1_" in c
        and "--num_seeds=5" in c
        and f"--out={tmp_path}/results.jsonl" in c
        for c in commands
    )
    for command, row in zip(commands, grids.get("seed_table"), strict=True):
        args = shlex.split(command)
        assert f"--name={row.name}" in args and f"--workdir={tmp_path}/work/{row.name}" in args
    one = launch("seed_table", "--out", str(tmp_path), "--list", "--row", "4")
    assert one.stdout.count("\n") == 1 and "--hidden=625,441 --act=relu6" in one.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["no_such_grid"], "unknown grid 'no_such_grid'; accepted: seed_table"),
        (["seed_table", "--row", "12"], "unknown row '12'; accepted: 1..11"),
        (["seed_table", "--", "--act=relu7"], "unknown --act 'relu7'"),
        (["seed_table", "--", "--stepz=5"], "Unknown command line flag 'stepz'"),
        (["seed_table", "--seedz", "5"], "unknown launch.sh option '--seedz'"),
        (["seed_table", "--jobs", "0"], "--jobs '0' must be a positive integer"),
        (["study", "mine", "--axis", "actx=relu"], "'actx' is not a flag a study can vary"),
        (["study", "--axis", "act=relu"], "launch.sh GRID|study NAME [--axis FLAG=V1,V2 ...]"),
    ],
)
def test_bad_input_stops_before_any_training(tmp_path, args, message):
    proc = (
        launch(*args, "--out", str(tmp_path))
        if "--" not in args
        else launch(*args[: args.index("--")], "--out", str(tmp_path), *args[args.index("--") :])
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results.jsonl").exists()
