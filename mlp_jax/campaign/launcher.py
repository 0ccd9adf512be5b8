"""The launcher's scheduler: which (row, seed, settings) runs of a grid are missing, and running
them as `experiments.mlp` processes on an engine (campaign/engines.py: `jobs` local job slots, or
Ray tasks on a cluster), into one output folder OUT:

    OUT/results.jsonl             the records of every run (what decides which runs are missing)
    OUT/logs/ROW.log              each row's output, appended by every launch that runs the row
    OUT/work/ROW/seeds-A-B-HASH   the work folder of seeds A..B of ROW under the settings HASH
    OUT/wall_seconds              wall time of every launch into OUT, killed ones included
    OUT/compilation_cache         programs compiled by the runs, loaded by any later run of them
    OUT/.lock                     held by a launch and its runs: a second launch waits for it

A row's missing seeds run as contiguous groups (seeds {0, 2} recorded and 4 asked for: seed 1,
then seeds 3); each group is one process training its seeds together. A work folder is named
by its seeds and by a digest of every setting its run checks on resume, so a relaunch with other
seeds or other flags starts its own folder and never finds one holding other settings.

One writer: a run records into its own work folder's results.jsonl alone, and the launch, once
the run has ended, appends those records to OUT/results.jsonl, skipping any OUT holds already.
On a cluster the runs' nodes share OUT through a network filesystem, where appends from several
machines are not atomic and file locks hold only where the filesystem and its mount options
support them; a launch on one machine is the only process that writes OUT/results.jsonl, so no
run retried or duplicated on another node can record twice or cut a record. (`--list`'s
commands, run by hand, append to OUT/results.jsonl themselves.)
"""

from collections.abc import Iterable, Sequence
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import queue
import shlex
import signal
import sys
import threading
import time

from mlp_jax.campaign import engines
from mlp_jax.core.errors import InputError
from mlp_jax.store import checkpoints, results

# Flags each run gets from the launch: given after `--` they would be overridden or misfile runs.
LAUNCH_SETS = ("name", "seed", "num_seeds", "out", "workdir")
HEARTBEAT_SECONDS = 10  # how often OUT/wall_seconds is brought up to date while rows run


@dataclasses.dataclass(frozen=True)
class Row:
    """A row to launch: its name, every flag its runs get (the row's and those after `--`) and
    the settings `experiments.mlp` builds from them (dataclasses.asdict of its Config)."""

    name: str
    args: tuple[str, ...]
    config: dict


@dataclasses.dataclass(frozen=True)
class Launch:
    """What to launch: `seeds` seeds (0..seeds-1) of every row of `grid` into folder `out`,
    each run by `python`, on `engine`: local, `jobs` processes at a time, or a Ray cluster."""

    grid: str
    out: str
    seeds: int = 1
    jobs: int = 1
    python: str = sys.executable
    engine: engines.EngineChoice = dataclasses.field(default_factory=engines.EngineChoice)


@dataclasses.dataclass(frozen=True)
class Run:
    """One `experiments.mlp` process: seeds seed..seed+num_seeds-1 of a row, run by `args` and
    its records' file, in work folder `workdir`."""

    row: str
    seed: int
    num_seeds: int
    args: tuple[str, ...]
    workdir: str
    log: str

    @property
    def command(self) -> tuple[str, ...]:
        """The command the launch runs: the records go to the work folder alone."""
        return (*self.args, f"--out={os.path.join(self.workdir, 'results.jsonl')}")


def refuse_launch_flags(extra: Sequence[str]) -> None:
    """Raise InputError for a flag after `--` that the launch sets itself (--noname too)."""
    for arg in extra:
        name = arg.lstrip("-").partition("=")[0]
        if arg.startswith("-") and (name in LAUNCH_SETS or name.removeprefix("no") in LAUNCH_SETS):
            raise InputError(
                f"{arg!r} after -- is set by the launch for each run; accepted after --: flags "
                f"of experiments.mlp but {', '.join('--' + f for f in LAUNCH_SETS)} (the launch's "
                "--seeds N and --out DIR choose seeds and folder)"
            )


def seed_groups(seeds: Iterable[int]) -> list[tuple[int, int]]:
    """Return the seeds as contiguous (first seed, count) groups: {1, 3, 4} -> [(1, 1), (3, 2)]."""
    groups: list[tuple[int, int]] = []
    for seed in sorted(set(seeds)):
        if groups and sum(groups[-1]) == seed:  # follows the last group's last seed
            groups[-1] = (groups[-1][0], groups[-1][1] + 1)
        else:
            groups.append((seed, 1))
    return groups


def work_folder(out: str, row: str, config: dict, seed: int, num_seeds: int) -> str:
    """Return the work folder of seeds seed..seed+num_seeds-1 of `row` under `config`: named by
    the seeds and a digest of the settings its run checks on resume."""
    checked = {
        k: v
        for k, v in {**config, "seed": seed, "num_seeds": num_seeds}.items()
        if k not in checkpoints.RESUMABLE
    }
    digest = hashlib.sha256(json.dumps(checked, sort_keys=True, default=list).encode())
    last = seed + num_seeds - 1
    return os.path.join(out, "work", row, f"seeds-{seed}-{last}-{digest.hexdigest()[:8]}")


def results_path(out: str) -> str:
    """Return the records file of a launch folder."""
    return os.path.join(out, "results.jsonl")


def check_out(out: str) -> None:
    """Raise InputError unless the launch can keep its logs and records in folder `out` (made
    if missing): checked before anything runs."""
    try:
        os.makedirs(out, exist_ok=True)
        with open(results_path(out), "a", encoding="utf-8"):
            pass
        os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    except OSError as e:
        raise InputError(
            f"--out {out!r}: cannot write {e.filename} ({e.strerror}); accepted: a writable "
            "folder, its results.jsonl a file"
        ) from None


def log_path(out: str, row: str) -> str:
    """Return the log file of a row."""
    return os.path.join(out, "logs", f"{row}.log")


def missing_runs(rows: Sequence[Row], records: list[dict], launch: Launch) -> list[list[Run]]:
    """Return, per row with seeds not yet recorded under its settings, the runs that train them."""
    plan = []
    for row in rows:
        done = results.done_seeds(records, row.name, row.config)
        missing = [seed for seed in range(launch.seeds) if seed not in done]
        runs = []
        for seed, count in seed_groups(missing):
            workdir = work_folder(launch.out, row.name, row.config, seed, count)
            args = (
                launch.python,
                "-m",
                "experiments.mlp",
                f"--name={row.name}",
                *row.args,
                f"--seed={seed}",
                f"--num_seeds={count}",
                f"--workdir={workdir}",
                f"--compilation_cache={os.path.join(launch.out, 'compilation_cache')}",
            )
            runs.append(Run(row.name, seed, count, args, workdir, log_path(launch.out, row.name)))
        if runs:
            plan.append(runs)
    return plan


def recorded(out: str) -> list[dict]:
    """Return the records in OUT/results.jsonl (none when it does not exist)."""
    path = results_path(out)
    return results.read(path) if os.path.exists(path) else []


def publish(run: Run, out: str) -> int:
    """Append the records of a finished run (its work folder's) to OUT/results.jsonl, but those
    of a (name, seed, settings) recorded there already; return how many it appended."""

    def key(record: dict) -> tuple:
        return record["name"], record["seed"], results.protocol(record["config"])

    held = {key(r) for r in recorded(out)}
    own = os.path.join(run.workdir, "results.jsonl")
    new = []
    for record in results.read(own) if os.path.exists(own) else []:
        if key(record) not in held:  # once, even if the folder holds it twice
            held.add(key(record))
            new.append(record)
    if new:
        results.append(new, results_path(out))
    return len(new)


def shell_lines(plan: list[list[Run]], out: str) -> str:
    """Return one shell command per run, its records appended to OUT/results.jsonl and its output
    to its row's log (for --list)."""
    lines = []
    for run in (run for row_runs in plan for run in row_runs):
        command = shlex.join((*run.args, f"--out={results_path(out)}"))
        lines.append(f"{command} >> {shlex.quote(run.log)} 2>&1\n")
    return "".join(lines)


def clock(seconds: float) -> str:
    """Return seconds as H:MM:SS."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def progress_line(
    label: str, busy: Sequence[float], total: int, elapsed: float, jobs: int, suffix: str = ""
) -> str:
    """Return `LABEL (n/total, elapsed H:MM:SS, eta H:MM:SS)SUFFIX` for the rows finished so far,
    each of which took `busy` seconds: the ETA is their mean times the rows left, over the job
    slots those rows fill."""
    done, left = len(busy), total - len(busy)
    eta = sum(busy) / done * left / min(jobs, left) if done and left else 0.0
    return f"{label} ({done}/{total}, elapsed {clock(elapsed)}, eta {clock(eta)}){suffix}"


class WallClock:
    """Wall time of every launch into a folder, kept in OUT/wall_seconds: the total before this
    launch plus this launch's time, saved on each finished row, every HEARTBEAT_SECONDS and on
    SIGTERM or SIGINT: a launch killed with SIGKILL loses at most the time since the last save."""

    def __init__(self, out: str):
        self.path = os.path.join(out, "wall_seconds")
        self.before = read_wall_seconds(self.path)
        self.start = time.monotonic()
        self._lock = threading.RLock()  # save() again from a signal that interrupted save()

    def elapsed(self) -> float:
        """Return this launch's seconds so far."""
        return time.monotonic() - self.start

    def total(self) -> float:
        """Return the seconds of every launch, this one so far included."""
        return self.before + self.elapsed()

    def save(self) -> float:
        """Write the total (atomically) and return it."""
        with self._lock:
            total = self.total()
            with open(self.path + ".tmp", "w", encoding="utf-8") as f:
                f.write(f"{total:.1f}\n")
            os.replace(self.path + ".tmp", self.path)
            return total


def read_wall_seconds(path: str) -> float:
    """Return the seconds in a wall_seconds file, 0 when there is none or it is unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return float(f.read())
    except (OSError, ValueError):
        return 0.0


@contextlib.contextmanager
def folder_lock(out: str):
    """Hold OUT/.lock (waiting, with a message, while another launch holds it); yield its file
    descriptor, which the runs inherit, so the lock holds until they end even if this process
    is killed."""
    with open(os.path.join(out, ".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another launch.sh writing {out} ...", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield lock.fileno()


class Interrupted(Exception):
    """The launch got SIGTERM or SIGINT."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame) -> None:
    raise Interrupted(signum)


class _Rows:
    """Runs rows on an engine, each row's runs one after the other in one of its slots, their
    records published to OUT; reports each finished row."""

    def __init__(self, launch: Launch, engine: engines.Engine, total: int, clock_: WallClock):
        self.launch, self.engine, self.total, self.clock = launch, engine, total, clock_
        self.free: queue.Queue[int] = queue.Queue()
        for slot in range(engine.slots):
            self.free.put(slot)
        self.busy: list[float] = []
        self.failed: list[str] = []
        self.stopping = False
        self._lock = threading.Lock()

    def run_row(self, runs: list[Run]) -> None:
        """Run a row's runs in a free slot (stopping at the first that fails), then report it."""
        slot = self.free.get()
        try:
            begin = time.monotonic()
            ok = all(self._run(run, slot) for run in runs)
            self._report(runs[0], time.monotonic() - begin, ok)
        finally:
            self.free.put(slot)

    def _run(self, run: Run, slot: int) -> bool:
        if self.engine.run(run.command, run.log, slot, run.workdir) != 0:
            return False
        with self._lock:  # one publisher at a time: none appends what another has
            publish(run, self.launch.out)
        return True

    def _report(self, run: Run, seconds: float, ok: bool) -> None:
        with self._lock:
            if self.stopping:
                return
            self.busy.append(seconds)
            label, suffix = ("done", "") if ok else ("FAILED", f", see {run.log}")
            if not ok:
                self.failed.append(run.row)
            line = progress_line(
                f"{label}: {run.row}", self.busy, self.total, self.clock.elapsed(),
                self.engine.slots, suffix,
            )  # fmt: skip
            print(line, flush=True)
        self.clock.save()

    def stop(self) -> None:
        """Start no more runs and end those running (SIGTERM: they checkpoint-resume later)."""
        with self._lock:
            self.stopping = True
        self.engine.stop()


def run(launch: Launch, rows: Sequence[Row]) -> tuple[int, float]:
    """Train the runs of `rows` not yet recorded in OUT, holding OUT's lock; return the exit code
    (0: all recorded; 1: a row failed; 128+N: stopped by signal N) and the total wall seconds of
    the launches into OUT; InputError, before anything runs, when OUT cannot take them."""
    check_out(launch.out)
    handlers = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with folder_lock(launch.out) as lock_fd:
            return _run_locked(launch, rows, lock_fd)
    except Interrupted as e:  # while waiting for another launch: nothing to add
        print(f"stopped by {e} while waiting", file=sys.stderr)
        return 128 + e.signum, read_wall_seconds(os.path.join(launch.out, "wall_seconds"))
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)


def _run_locked(launch: Launch, rows: Sequence[Row], lock_fd: int) -> tuple[int, float]:
    """`run` once OUT's lock is held."""
    clock_ = WallClock(launch.out)
    plan = missing_runs(rows, recorded(launch.out), launch)
    if not plan:
        print(
            f"nothing to run: every row of {launch.grid} has {launch.seeds} seed(s) in "
            f"{results_path(launch.out)}"
        )
        return 0, clock_.save()
    engine = engines.open_engine(launch.engine, launch.out, launch.python, launch.jobs, lock_fd)
    for s in (signal.SIGTERM, signal.SIGINT):  # ours again, whatever the engine's client set
        signal.signal(s, _interrupt)
    rows_ = _Rows(launch, engine, len(plan), clock_)
    pool = concurrent.futures.ThreadPoolExecutor(engine.slots)
    print(
        f"{len(plan)} row(s) to run, {engine.slots} at a time ({launch.engine.name}); logs in "
        f"{os.path.join(launch.out, 'logs')}",
        flush=True,
    )
    try:
        pending = {pool.submit(rows_.run_row, runs) for runs in plan}
        while pending:
            done, pending = concurrent.futures.wait(pending, HEARTBEAT_SECONDS)
            for future in done:
                future.result()  # a fault while publishing records ends the launch with it
            clock_.save()
        return (1 if rows_.failed else 0), clock_.save()
    except Interrupted as e:
        for s in (signal.SIGTERM, signal.SIGINT):  # a second signal: still end the runs
            signal.signal(s, signal.SIG_IGN)
        rows_.stop()
        total = clock_.save()
        print(f"stopped by {e}: rerun the same command to resume", file=sys.stderr, flush=True)
        return 128 + e.signum, total
    except BaseException:
        rows_.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        engine.close()
