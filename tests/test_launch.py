"""The launcher: its scheduling in process (missing runs, seed groups, work folders, refused
flags, progress, logs, wall time, GPU slots, signals) with a stand-in for experiments.mlp, and
launch.sh end to end: a whole grid in seconds, resuming after a kill, relaunching with more seeds
or other flags, two launches at once, listing, bad input."""

import collections
import dataclasses
import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from experiments import cli
from mlp_jax.campaign import engines, grids, launcher, tables
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError, MachineError
from mlp_jax.store import checkpoints, results
from tests.helpers import REPO, run_modules
from tests.test_tables import record

slow = pytest.mark.slow  # the tests that start launch.sh
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


@slow
def test_killed_launch_resumes_without_lost_or_duplicate_records(tmp_path):
    """A study (4 cells x 2 seeds) killed after its first records resumes on 2 slots: each run
    recorded once, its pivot exported, its wall time kept; a third launch trains nothing."""
    out = tmp_path / "study"
    axes = ["--axis", "act=relu,tanh", "--axis", "hidden=16,16/16"]
    options = ["study", "mine", *axes, "--seeds", "2", "--out", str(out)]
    args = [*options, "--", "--steps=50"]
    path = str(out / "results.jsonl")
    killed_at = launch_killed_after_two_records(args, path)
    assert killed_at in (2, 4, 6)  # whole cells: a cell's two seeds are recorded together
    killed_seconds = launcher.read_wall_seconds(str(out / "wall_seconds"))
    assert killed_seconds > 0  # the killed launch's time counts

    resumed = launch(*options, "--jobs", "2", "--", "--steps=50")
    left = 4 - killed_at // 2
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{left} row(s) to run" in resumed.stdout
    assert f"({left}/{left}, elapsed " in resumed.stdout
    records = results.read(path)
    names = collections.Counter((r["name"], r["seed"]) for r in records)
    assert names == {
        (f"act-{act}__hidden-{hidden}", seed): 1
        for act in ("relu", "tanh")
        for hidden in ("16", "16x16")
        for seed in (0, 1)
    }
    for ext in ("md", "csv", "json", "tex", "png"):
        assert (out / f"table.{ext}").stat().st_size > 0
    table = (out / "table.md").read_text()
    assert table.startswith("Command: `./launch.sh study mine --axis act=relu,tanh")
    assert "| act \\ hidden | 16 | 16x16 |" in table and "Total wall time" in table
    assert launcher.read_wall_seconds(str(out / "wall_seconds")) > killed_seconds
    (matrix,) = json.loads((out / "table.json").read_text())["matrices"]
    assert matrix["rows"] == ["relu", "tanh"] and matrix["columns"] == ["16", "16x16"]
    for row in matrix["cells"]:
        assert [cell["n"] for cell in row] == [2, 2]
        assert all(cell["ci_low"] <= cell["mean"] <= cell["ci_high"] for cell in row)
        assert [cell["mark"] for cell in row].count(tables.BEST) == 1

    again = launch(*args)
    assert again.returncode == 0 and "nothing to run" in again.stdout
    assert count_records(path) == 8

    # Other settings are other runs: they are not taken for complete.
    rows = [
        launcher.Row(row.name, (), dataclasses.asdict(cli.row_config(row, ["--steps=60"])))
        for row in grids.study("mine", axes[1::2]).rows()
    ]
    pending = launcher.missing_runs(rows, records, launcher.Launch("mine", str(out), seeds=2))
    assert len(pending) == 4


@slow
def test_a_grid_with_every_run_recorded_trains_nothing_and_exports_its_table(tmp_path):
    """The seed_table grid's table (every row, every format) from records of its settings."""
    path = str(tmp_path / "results.jsonl")
    results.append(
        [
            {
                **record(row.name, 0, 0.9, steps=50),
                "config": dataclasses.asdict(cli.row_config(row, ["--steps=50"])),
            }
            for row in grids.get("seed_table")
        ],
        path,
    )
    args = ["seed_table", "--seeds", "1", "--out", str(tmp_path), "--", "--steps=50"]
    again = launch(*args)
    assert again.returncode == 0 and "nothing to run" in again.stdout, again.stdout + again.stderr
    names = collections.Counter(r["name"] for r in results.read(path))
    assert names == {row.name: 1 for row in grids.get("seed_table")}
    for ext in ("md", "csv", "json", "tex", "png"):
        assert (tmp_path / f"table.{ext}").stat().st_size > 0
    table = (tmp_path / "table.md").read_text()
    assert table.startswith("Command: `./launch.sh seed_table") and "Total wall time" in table
    assert sum(line.startswith("| t1_") for line in table.splitlines()) == ROWS


@slow
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


@slow
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
        assert f"--name={row.name}" in args
        assert any(a.startswith(f"--workdir={tmp_path}/work/{row.name}/seeds-0-4-") for a in args)
    one = launch("seed_table", "--out", str(tmp_path), "--list", "--row", "4")
    assert one.stdout.count("\n") == 1 and "--hidden=625,441 --act=relu6" in one.stdout


BAD_INPUT = [
    (["no_such_grid"], "unknown grid 'no_such_grid'; accepted: seed_table"),
    (["seed_table", "--row", "12"], "unknown row '12'; accepted: 1..11"),
    (["seed_table", "--", "--act=relu7"], "unknown --act 'relu7'"),
    (["seed_table", "--", "--stepz=5"], "Unknown command line flag 'stepz'"),
    (["seed_table", "--seedz", "5"], "unknown launch.sh option '--seedz'"),
    (["seed_table", "--jobs", "0"], "flag --jobs=0: 0 is not a positive integer"),
    (["study", "mine", "--axis", "actx=relu"], "'actx' is not a flag a study can vary"),
    (["study", "--axis", "act=relu"], "launch.sh GRID|study NAME [--axis FLAG=V1,V2 ...]"),
    (["seed_table", "--", "--noname"], "'--noname' after -- is set by the launch"),
    (["seed_table", "--", "--seed", "5"], "'--seed' after -- is set by the launch"),
    (["seed_table", "--gpus_per_run", "1"], "--gpus_per_run is a flag of --engine=ray"),
    (["seed_table", "--engine=ray", "--jobs", "2"], "--jobs is the local engine's"),
    (["seed_table", "--engine=ray", "--ray_address=nohost"], "'nohost' is not an address"),
    (["seed_table", "--engine=ray", "--cpus_per_run=0"], "accepted: more than 0 CPUs"),
]


def with_out(args: list[str], out) -> list[str]:
    """Return launch.sh's arguments `args` with `--out out` before any `--`."""
    end = args.index("--") if "--" in args else len(args)
    return [*args[:end], "--out", str(out), *args[end:]]


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> list[tuple[subprocess.CompletedProcess, object]]:
    """Each bad input's launch (experiments.launch, as launch.sh runs it) and its folder, all
    run at once (helpers.run_modules)."""
    folders = [tmp_path_factory.mktemp("refused") for _ in BAD_INPUT]
    jobs = [
        ["experiments.launch", *with_out(args, folder)]
        for (args, _), folder in zip(BAD_INPUT, folders, strict=True)
    ]
    return list(zip(run_modules(*jobs), folders, strict=True))


def check_refused(proc: subprocess.CompletedProcess, message: str, out) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "results.jsonl").exists()


@slow
@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_stops_before_any_training(refused, case):
    proc, out = refused[case]
    check_refused(proc, BAD_INPUT[case][1], out)


@slow
def test_bad_input_ends_launch_sh_in_one_line_and_exit_2(tmp_path):
    args, message = BAD_INPUT[0]
    check_refused(launch(*with_out(args, tmp_path)), message, tmp_path)


@slow
def test_relaunch_trains_exactly_the_missing_runs(tmp_path, mnist_dir):
    """The README's smoke run, then more seeds, a lost seed, and other flags, into one folder:
    no row fails, and each (seed, settings) is trained and recorded once."""
    tiny = ["--steps=50", "--eval_every=25"]
    path = tmp_path / "results.jsonl"

    def relaunch(seeds: int, *flags: str) -> subprocess.CompletedProcess:
        args = ["seed_table", "--row", "1", "--seeds", str(seeds), "--out", str(tmp_path)]
        proc = launch(*args, "--", *flags)
        assert proc.returncode == 0 and "FAILED" not in proc.stdout, proc.stdout + proc.stderr
        return proc

    def runs() -> collections.Counter:
        return collections.Counter(
            (r["seed"], r["config"]["steps"]) for r in results.read(str(path))
        )

    relaunch(1, *tiny)
    relaunch(3, *tiny)  # more seeds: seeds 1 and 2 train, in their own work folder
    assert runs() == {(0, 50): 1, (1, 50): 1, (2, 50): 1}

    kept = [line for line in path.read_text().splitlines() if json.loads(line)["seed"] != 1]
    path.write_text("\n".join(kept) + "\n")  # seeds {0, 2} recorded
    relaunch(3, *tiny)
    assert runs() == {(0, 50): 1, (1, 50): 1, (2, 50): 1}
    log = (tmp_path / "logs" / "t1_01_softmax.log").read_text()
    headers = [line for line in log.splitlines() if line.startswith("=== ")]
    assert len(headers) == 3 and " --seed=1 --num_seeds=1 " in headers[-1]  # appended, seed 1

    other = relaunch(1, "--steps=60", "--eval_every=30")  # other flags: the runs of those flags
    assert "1 row(s) to run" in other.stdout
    assert runs() == {(0, 50): 1, (1, 50): 1, (2, 50): 1, (0, 60): 1}
    table = (tmp_path / "table.md").read_text()
    (line,) = [line for line in table.splitlines() if line.startswith("| t1_01_softmax")]
    assert "| 60 |" in line and "(1)" in line  # the launch's settings only


def fake_mlp(tmp_path) -> str:
    """Write a stand-in for `python -m experiments.mlp`: it prints its slot's GPU settings, fails
    for the row named in $FAKE_FAIL, sleeps $FAKE_SECONDS, then records its seeds (settings {})."""
    script = tmp_path / "fake_python"
    script.write_text(
        f"#!{sys.executable}\n"
        """import json, os, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[3:])
os.makedirs(args["workdir"], exist_ok=True)
env = os.environ
print("trains", args["name"], args["seed"], args["num_seeds"], env.get("CUDA_VISIBLE_DEVICES"),
      env.get("XLA_PYTHON_CLIENT_PREALLOCATE"), flush=True)
if os.environ.get("FAKE_FAIL") == args["name"]:
    sys.exit(1)
time.sleep(float(os.environ.get("FAKE_SECONDS", "0")))
with open(args["out"], "a") as f:
    for seed in range(int(args["seed"]), int(args["seed"]) + int(args["num_seeds"])):
        f.write(json.dumps({"name": args["name"], "seed": seed, "config": {}}) + "\\n")
"""
    )
    script.chmod(0o755)
    return str(script)


def fake_launch(tmp_path, seeds: int, jobs: int = 1, names: str = "ab") -> tuple[int, float]:
    """Launch rows `names` (settings {}) with the stand-in for experiments.mlp."""
    settings = launcher.Launch("fake", str(tmp_path / "out"), seeds, jobs, fake_mlp(tmp_path))
    rows = [launcher.Row(name, ("--steps=5",), {}) for name in names]
    return launcher.run(settings, rows)


def recorded_seeds(tmp_path) -> collections.Counter:
    return collections.Counter(
        (r["name"], r["seed"]) for r in launcher.recorded(str(tmp_path / "out"))
    )


@pytest.mark.parametrize(
    "extra",
    [
        ["--name=foo"],
        ["--noname"],
        ["--seed=5"],
        ["--seed", "5"],
        ["-seed=5"],
        ["--num_seeds=4"],
        ["--steps=5", "--out=x.jsonl"],
        ["--workdir=w"],
    ],
)
def test_flags_the_launch_sets_are_refused_after_the_separator(extra):
    with pytest.raises(InputError, match="is set by the launch for each run"):
        launcher.refuse_launch_flags(extra)


def test_other_flags_pass_after_the_separator():
    launcher.refuse_launch_flags(["--steps=5", "--hidden=16", "--nooutput_bias", "--seeds_x=1"])


def test_missing_seeds_run_as_contiguous_groups():
    assert launcher.seed_groups({4, 1, 3}) == [(1, 1), (3, 2)]
    assert launcher.seed_groups([0, 1, 2]) == [(0, 3)]
    assert launcher.seed_groups([]) == []


def test_relaunch_plans_only_the_seeds_and_settings_not_recorded():
    settings = launcher.Launch("g", "OUT", seeds=5, python="py")
    config = {"steps": 50}
    row = launcher.Row("r", ("--steps=50",), config)
    records = [{"name": "r", "seed": s, "config": config} for s in (0, 2)]
    records.append({"name": "r", "seed": 1, "config": {"steps": 60}})  # other settings
    (runs,) = launcher.missing_runs([row], records, settings)
    assert [(run.seed, run.num_seeds) for run in runs] == [(1, 1), (3, 2)]
    first = runs[0].command
    assert first[:4] == ("py", "-m", "experiments.mlp", "--name=r")
    assert first[4:7] == ("--steps=50", "--seed=1", "--num_seeds=1")
    workdir = first[7].removeprefix("--workdir=")
    assert workdir.startswith("OUT/work/r/seeds-1-1-") and runs[0].log == "OUT/logs/r.log"
    assert first[8] == "--compilation_cache=OUT/compilation_cache"
    assert first[9] == f"--out={workdir}/results.jsonl"  # the launch alone appends to OUT
    records += [{"name": "r", "seed": s, "config": config} for s in (1, 3, 4)]
    assert launcher.missing_runs([row], records, settings) == []
    assert launcher.missing_runs([row], records, dataclasses.replace(settings, seeds=6))


def test_a_run_s_records_reach_out_once_however_often_they_are_published(tmp_path):
    """The launch is OUT's one writer: a run retried or duplicated on another node, or a
    launch killed after publishing, never records twice."""
    out, workdir = tmp_path / "out", tmp_path / "out" / "work" / "r" / "seeds-0-1-x"
    made = [{"name": "r", "seed": seed, "config": {"steps": 5}} for seed in (0, 1)]
    results.append(made, str(workdir / "results.jsonl"))
    results.append(made[1:], str(workdir / "results.jsonl"))  # two attempts recorded seed 1
    run = launcher.Run("r", 0, 2, ("py",), str(workdir), str(out / "logs" / "r.log"))
    assert run.command[-1] == f"--out={workdir}/results.jsonl"
    assert launcher.publish(run, str(out)) == 2
    assert launcher.publish(run, str(out)) == 0
    assert launcher.recorded(str(out)) == made


def test_work_folder_differs_in_every_setting_its_run_checks_on_resume():
    """A relaunch with other seeds or settings never finds a work folder holding another run."""
    config = dataclasses.asdict(Config())
    folder = launcher.work_folder("OUT", "r", config, 0, 2)
    assert folder == launcher.work_folder("OUT", "r", dict(config), 0, 2)  # a resume finds it
    assert folder != launcher.work_folder("OUT", "r", config, 0, 3)
    assert folder != launcher.work_folder("OUT", "r", config, 1, 2)
    for key in config.keys() - {"seed", "num_seeds"}:  # the run's, from the folder's seeds
        changed = launcher.work_folder("OUT", "r", {**config, key: "other"}, 0, 2)
        assert (changed == folder) == (key in checkpoints.RESUMABLE), key


def test_progress_line_gives_rows_finished_elapsed_and_eta():
    # Two rows took 10 s and 30 s: three left on two slots take 20 s x 3 / 2.
    line = launcher.progress_line("done: r", [10.0, 30.0], 5, 65.0, jobs=2)
    assert line == "done: r (2/5, elapsed 0:01:05, eta 0:00:30)"
    assert launcher.progress_line("done: r", [10.0], 2, 10, jobs=4) == (
        "done: r (1/2, elapsed 0:00:10, eta 0:00:10)"  # one row left fills one slot
    )
    last = launcher.progress_line("FAILED: r", [5.0, 5.0], 2, 3725, jobs=1, suffix=", see L")
    assert last == "FAILED: r (2/2, elapsed 1:02:05, eta 0:00:00), see L"


def test_gpus_are_those_visible_else_those_nvidia_smi_lists(monkeypatch):
    assert engines.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert engines.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    listed = subprocess.CompletedProcess([], 0, "GPU 0: H100 (UUID: a)\nGPU 1: H100 (UUID: b)\n")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: listed)
    assert engines.visible_gpus({}) == ["0", "1"]

    def missing(*args, **kwargs):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(subprocess, "run", missing)
    assert engines.visible_gpus({}) == []


def test_job_slots_take_gpus_in_turn_and_share_without_preallocating():
    assert engines.slot_environment(3, [], jobs=4) == {}
    assert engines.slot_environment(3, ["0", "1"], jobs=2) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert engines.slot_environment(2, ["4", "5"], jobs=3) == {
        "CUDA_VISIBLE_DEVICES": "4",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    }


def test_wall_time_adds_up_over_launches(tmp_path, monkeypatch):
    (tmp_path / "wall_seconds").write_text("100.0\n")
    now = [50.0]
    monkeypatch.setattr(launcher.time, "monotonic", lambda: now[0])
    clock = launcher.WallClock(str(tmp_path))
    now[0] += 7.5
    assert clock.save() == 107.5 and (tmp_path / "wall_seconds").read_text() == "107.5\n"
    now[0] += 1
    assert launcher.WallClock(str(tmp_path)).total() == 107.5  # a killed launch's last save
    assert launcher.read_wall_seconds(str(tmp_path / "none")) == 0.0


def test_launch_runs_missing_seeds_appends_logs_and_reports_progress(tmp_path, capsys):
    assert fake_launch(tmp_path, seeds=1)[0] == 0
    assert fake_launch(tmp_path, seeds=3, jobs=2)[0] == 0
    assert recorded_seeds(tmp_path) == {(n, s): 1 for n in "ab" for s in range(3)}
    out = capsys.readouterr().out
    assert "2 row(s) to run, 2 at a time" in out
    assert "done: a (1/2, elapsed 0:00:" in out or "done: b (1/2, elapsed 0:00:" in out
    log = (tmp_path / "out" / "logs" / "a.log").read_text()
    assert log.count("=== ") == 2 and "trains a 0 1" in log and "trains a 1 2" in log
    code, wall = fake_launch(tmp_path, seeds=3)
    assert code == 0 and capsys.readouterr().out.startswith("nothing to run: every row of fake")
    assert launcher.read_wall_seconds(str(tmp_path / "out" / "wall_seconds")) == round(wall, 1)


def test_a_failed_row_is_reported_and_the_others_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "a")
    assert fake_launch(tmp_path, seeds=2)[0] == 1
    out = capsys.readouterr().out
    assert f"FAILED: a (1/2, elapsed 0:00:00, eta 0:00:00), see {tmp_path}/out/logs/a.log" in out
    assert recorded_seeds(tmp_path) == {("b", 0): 1, ("b", 1): 1}


def test_a_fault_while_publishing_records_ends_the_launch_with_it(tmp_path, monkeypatch):
    def full_disk(records, path):
        raise MachineError(f"cannot append {len(records)} records to {path}: No space left")

    monkeypatch.setattr(launcher.results, "append", full_disk)
    with pytest.raises(MachineError, match="No space left"):
        fake_launch(tmp_path, seeds=1, names="a")


def test_job_slots_run_on_gpus_in_turn(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "visible_gpus", lambda: ["0", "1"])
    assert fake_launch(tmp_path, seeds=1, jobs=3, names="abc")[0] == 0
    logs = [(tmp_path / "out" / "logs" / f"{n}.log").read_text() for n in "abc"]
    assert sorted(log.splitlines()[1].split()[-2] for log in logs) in (
        ["0", "0", "1"],
        ["0", "1", "1"],
    )
    assert all(log.splitlines()[1].endswith(" false") for log in logs)


def test_sigterm_ends_the_runs_and_keeps_the_wall_time(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_SECONDS", "60")
    threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    began = time.monotonic()
    code, _ = fake_launch(tmp_path, seeds=1, jobs=2)
    assert code == 128 + signal.SIGTERM and time.monotonic() - began < 30
    assert 1 <= launcher.read_wall_seconds(str(tmp_path / "out" / "wall_seconds")) < 30
    assert "stopped by SIGTERM" in capsys.readouterr().err
    assert recorded_seeds(tmp_path) == {}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def read_only_below(monkeypatch, root) -> None:
    """Make the folders not yet made below `root` fail as on a read-only file system (EROFS),
    as a user's read-only mount does; root could write into a chmod 0o500 folder."""
    makedirs = os.makedirs

    def refuse(path, *args, **kwargs):
        if str(path).startswith(str(root)) and not os.path.isdir(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", refuse)


@pytest.mark.parametrize("where", ["results_is_a_folder", "parent_is_a_file", "read_only"])
def test_an_output_folder_that_cannot_take_records_is_refused_before_any_run(
    tmp_path, monkeypatch, where
):
    out = tmp_path / "out"
    if where == "results_is_a_folder":
        (out / "results.jsonl").mkdir(parents=True)
    elif where == "parent_is_a_file":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out"
    else:
        read_only_below(monkeypatch, out)
    settings = launcher.Launch("fake", str(out), 1, 1, fake_mlp(tmp_path))
    with pytest.raises(InputError) as refused:
        launcher.run(settings, [launcher.Row("a", ("--steps=5",), {})])
    message = str(refused.value)
    assert message.startswith(f"--out {str(out)!r}: cannot write ") and "\n" not in message
    assert "accepted: a writable folder" in message
    assert not (out / "logs").exists()  # nothing ran


@slow
def test_an_output_folder_holding_a_folder_for_its_records_ends_in_one_line_and_exit_2(tmp_path):
    (tmp_path / "results.jsonl").mkdir()
    (proc,) = run_modules(["experiments.launch", *with_out(["seed_table", "--row", "1"], tmp_path)])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: --out {str(tmp_path)!r}: cannot write {tmp_path}/results.jsonl (Is a "
        "directory); accepted: a writable folder, its results.jsonl a file"
    ]
    assert not (tmp_path / "logs").exists()
