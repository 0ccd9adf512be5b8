"""Where a campaign's runs execute: an engine runs one command to its end, its output appended
to a log in OUT, and says how many commands it runs at once. The launcher's plan, lock, records,
progress lines and tables are the same for every engine (campaign/launcher.py).

    local   job slots on this machine (--jobs J): slot i on GPU i mod the visible GPUs
    ray     Ray Core tasks on a cluster (--ray_address HOST:PORT, or auto: $RAY_ADDRESS or the
            cluster `ray start` made on this machine), each with --cpus_per_run CPUs and
            --gpus_per_run GPUs; a task whose node dies is retried on another node (up to
            `retries` times), its run resuming from its work folder's last verified checkpoint

A Ray task runs the very command a slot runs, as a child process that dies with the task, in
the driver's working directory, its output appended to the log in OUT: every node must see the
repository, its Python and OUT at the same paths (a shared filesystem, or one image and a shared
OUT). Ray gives a task with GPUs its own devices in CUDA_VISIBLE_DEVICES; a run without GPUs sees
none. The driver's XLA_*, JAX_* and MLP_JAX_* variables reach every run, so that a run computes
on the cluster what it computes here; each run's records name its node (results.RAY_NODE_ENV).
Before anything runs, a Ray engine checks that the address answers (MachineError, exit 3), that
some node has a run's CPUs and GPUs and that every node sees OUT and the Python (InputError,
exit 2); it runs as many commands at once as the cluster's nodes hold runs when it starts.
"""

from collections.abc import Sequence
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import datetime
import fcntl
import logging
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from typing import Protocol
import uuid

from mlp_jax.core.errors import InputError, MachineError

ENGINES = ("local", "ray")
FORWARDED = ("XLA_", "JAX_", "MLP_JAX_")  # driver variables that change what a run computes
CONNECT_SECONDS = 10  # an address silent this long is unreachable (ray.init would retry forever)
FOLDER_WAIT_SECONDS = 300  # a retried run waits this long for its lost attempt's folder lock
ADDRESS = re.compile(r"[\w.-]+:\d{1,5}|auto")


@dataclasses.dataclass(frozen=True)
class EngineChoice:
    """Which engine runs a campaign: `name` local or ray; for ray the cluster's `ray_address`,
    each run's `cpus_per_run` and `gpus_per_run`, and the `retries` of a task whose node died."""

    name: str = "local"
    ray_address: str = "auto"
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    retries: int = 3

    def __post_init__(self):
        if self.name not in ENGINES:
            raise InputError(f"unknown --engine {self.name!r}; accepted: {', '.join(ENGINES)}")
        if not ADDRESS.fullmatch(self.ray_address):
            raise InputError(
                f"--ray_address {self.ray_address!r} is not an address; accepted: HOST:PORT "
                "(the head's GCS port, 6379 by default) or auto"
            )
        if not self.cpus_per_run > 0 or not self.gpus_per_run >= 0:
            raise InputError(
                f"--cpus_per_run {self.cpus_per_run:g} --gpus_per_run {self.gpus_per_run:g}: "
                "accepted: more than 0 CPUs and at least 0 GPUs per run"
            )


class Engine(Protocol):
    """Runs commands, each to its end, `slots` at a time."""

    slots: int

    def run(self, command: Sequence[str], log: str, slot: int, folder: str | None = None) -> int:
        """Run `command` in job slot `slot` (0..slots-1), its output appended to the file `log`;
        `folder` is its work folder, if any; return its exit code."""
        ...

    def stop(self) -> None:
        """End the running commands (SIGTERM: a run resumes later from its checkpoint) and start
        no more."""
        ...

    def close(self) -> None:
        """Release what the engine holds."""
        ...


def open_engine(choice: EngineChoice, out: str, python: str, jobs: int = 1, lock_fd=None):
    """Return the engine `choice` names for a campaign writing into folder `out` with the
    interpreter `python`: local slots (`jobs`, each run inheriting the descriptor `lock_fd`) or
    a connection to the Ray cluster, checked."""
    if choice.name == "local":
        return LocalSlots(jobs, lock_fd)
    return RayTasks(choice, out, python)


def log_header(command: Sequence[str], where: str) -> str:
    """Return the line that opens a run's part of its log: when, where and what."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    return f"=== {now} on {where}: {shlex.join(command)}\n"


def log_footer(code: int) -> str:
    """Return the line that closes a run's part of its log."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    return f"--- {now} exit {code}\n"


def visible_gpus(environ: dict | None = None) -> list[str]:
    """Return the GPUs the runs may use: those in CUDA_VISIBLE_DEVICES when it is set, else one
    per GPU that `nvidia-smi -L` lists (none without it). Not asked of jax: that would start a
    CUDA client here and take GPU memory from the runs."""
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [gpu for gpu in environ["CUDA_VISIBLE_DEVICES"].split(",") if gpu.strip()]
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    count = sum(line.startswith("GPU") for line in listed.stdout.splitlines())
    return [str(i) for i in range(count)]


def slot_environment(slot: int, gpus: Sequence[str], jobs: int) -> dict[str, str]:
    """Return the environment settings of job slot `slot`: its GPU (slot mod the GPUs), and no
    preallocation of GPU memory when several slots share a GPU."""
    if not gpus:
        return {}
    settings = {"CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]}
    if jobs > len(gpus):
        settings["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return settings


class LocalSlots:
    """`jobs` job slots on this machine; each run inherits the descriptor `lock_fd` (OUT's
    lock), so the lock holds until the runs end even if the launch is killed."""

    def __init__(self, jobs: int, lock_fd: int | None = None):
        self.slots, self.lock_fd = jobs, lock_fd
        self.gpus = visible_gpus()
        self.running: set[subprocess.Popen] = set()
        self.stopping = False
        self._lock = threading.Lock()

    def run(self, command: Sequence[str], log: str, slot: int, folder: str | None = None) -> int:
        env = {**os.environ, **slot_environment(slot, self.gpus, self.slots)}
        with open(log, "a", encoding="utf-8") as out:
            with self._lock:
                if self.stopping:
                    return -signal.SIGTERM
                out.write(log_header(command, f"{socket.gethostname()}, slot {slot}"))
                out.flush()
                proc = subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, env=env,
                    pass_fds=() if self.lock_fd is None else (self.lock_fd,),
                )  # fmt: skip
                self.running.add(proc)
            code = proc.wait()
            with self._lock:
                self.running.discard(proc)
            out.write(log_footer(code))
        return code

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            running = list(self.running)
        for proc in running:
            proc.terminate()
        for proc in running:
            proc.wait()

    def close(self) -> None:
        pass


def _die_with_parent() -> None:
    """In a child before it runs its command: be killed when the Ray worker that started it
    dies (a lost or cancelled task leaves no run behind holding its work folder)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def wait_for_folder(folder: str, seconds: float = FOLDER_WAIT_SECONDS) -> None:
    """Wait until no process holds the lock of work folder `folder` (at most `seconds`): a
    retried task's lost attempt may hold it a while (a network filesystem's lease)."""
    # The lock file of checkpoints.Workdir, named here: that module would import JAX on the node.
    path = os.path.join(folder, ".lock")
    deadline = time.monotonic() + seconds
    while os.path.exists(path) and time.monotonic() < deadline:
        with open(path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
        time.sleep(1)


def run_on_node(
    command: Sequence[str], log: str, cwd: str, settings: dict, folder: str | None, naming: str
) -> int:
    """The Ray task: run `command` on this node in `cwd` with the environment `settings` and the
    node's id in variable `naming`, its output appended to `log`, ended with the task (cancelled:
    SIGTERM); return its exit code."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    env = {**os.environ, **settings, naming: node}
    if folder:
        wait_for_folder(folder)
    devices = env.get("CUDA_VISIBLE_DEVICES")
    where = f"{socket.gethostname()}, Ray node {node}, CUDA_VISIBLE_DEVICES={devices}"
    with open(log, "a", encoding="utf-8") as out:
        out.write(log_header(command, where))
        out.flush()
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        try:
            code = proc.wait()
        finally:  # ray.cancel interrupts the wait
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
        out.write(log_footer(code))
    return code


def check_node(out: str, token: str, python: str) -> str:
    """The Ray task checking a node: return what it lacks (OUT's probe file holding `token`,
    the Python), or '' when it has both."""
    import ray

    node = f"{socket.gethostname()} (Ray node {ray.get_runtime_context().get_node_id()})"
    try:
        with open(os.path.join(out, f".engine-probe-{token}"), encoding="utf-8") as f:
            seen = f.read()
    except OSError as e:
        seen = e.strerror
    if seen != token:
        return (
            f"node {node} cannot read --out {out!r} ({seen or 'another folder'}); accepted: a "
            "folder that every node mounts at the same path"
        )
    if not os.access(python, os.X_OK):
        return f"node {node} has no Python at {python}; accepted: the same path on every node"
    return ""


def reach(address: str) -> str:
    """Return the cluster's HOST:PORT for `address` (auto: as Ray finds it); MachineError when
    there is none or it does not answer within CONNECT_SECONDS."""
    if address == "auto":
        from ray._private import services  # Ray's own lookup of `auto`: $RAY_ADDRESS, ray start

        with contextlib.suppress(ConnectionError):
            address = services.canonicalize_bootstrap_address("auto")
        if address in (None, "auto"):
            raise MachineError(
                "--ray_address auto: no Ray cluster found ($RAY_ADDRESS unset and no `ray start` "
                "on this machine); start one or give --ray_address=HOST:PORT"
            )
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as e:
        raise MachineError(
            f"--ray_address {address}: the cluster cannot be reached "
            f"({e.strerror or type(e).__name__}); start its head with `ray start --head`"
        ) from None
    return address


def capacity(nodes: list[dict], choice: EngineChoice) -> int:
    """Return how many runs of `choice`'s CPUs and GPUs the alive `nodes` (ray.nodes()) hold at
    once; InputError when no node holds one."""
    alive = [n["Resources"] for n in nodes if n["Alive"]]
    fits = [
        min(
            math.floor(r.get("CPU", 0) / choice.cpus_per_run + 1e-9),
            math.floor(r.get("GPU", 0) / choice.gpus_per_run + 1e-9)
            if choice.gpus_per_run
            else math.inf,
        )
        for r in alive
    ]
    if not sum(fits):
        largest = max(((r.get("CPU", 0), r.get("GPU", 0)) for r in alive), default=(0, 0))
        raise InputError(
            f"--cpus_per_run {choice.cpus_per_run:g} --gpus_per_run {choice.gpus_per_run:g}: no "
            f"node of the cluster has that much (the largest: {largest[0]:g} CPUs, "
            f"{largest[1]:g} GPUs); accepted: at most a node's CPUs and GPUs"
        )
    return int(sum(fits))


class RayTasks:
    """A connection to a Ray cluster that runs each command as a task with its resources."""

    def __init__(self, choice: EngineChoice, out: str, python: str):
        import ray  # on a Ray node, this module imports neither Ray nor JAX till a task needs it

        from mlp_jax.store import results

        self.ray, self.choice = ray, choice
        address = reach(choice.ray_address)
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        try:
            self.slots = capacity(ray.nodes(), choice)
            self._check_nodes(out, python)
        except BaseException:
            ray.shutdown()
            raise
        self.task = ray.remote(run_on_node).options(
            num_cpus=choice.cpus_per_run,
            num_gpus=choice.gpus_per_run,
            max_retries=choice.retries,
            retry_exceptions=False,
        )
        self.settings = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED)}
        if not choice.gpus_per_run:
            self.settings["CUDA_VISIBLE_DEVICES"] = ""  # Ray leaves a task without GPUs all
        elif choice.gpus_per_run < 1:
            self.settings["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # runs share a GPU
        self.naming = results.RAY_NODE_ENV
        self.pending: set = set()
        self.stopping = False
        self._lock = threading.Lock()

    def _check_nodes(self, out: str, python: str) -> None:
        """Raise InputError naming the first alive node that cannot read OUT or lacks Python."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = uuid.uuid4().hex
        probe = os.path.join(out, f".engine-probe-{token}")
        with open(probe, "w", encoding="utf-8") as f:
            f.write(token)
        try:
            check = self.ray.remote(check_node)
            refs = [
                check.options(
                    num_cpus=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
                ).remote(os.path.abspath(out), token, python)
                for n in self.ray.nodes()
                if n["Alive"]
            ]
            lacking = [problem for problem in self.ray.get(refs) if problem]
        finally:
            os.remove(probe)
        if lacking:
            raise InputError(lacking[0])

    def run(self, command: Sequence[str], log: str, slot: int, folder: str | None = None) -> int:
        with self._lock:
            if self.stopping:
                return -signal.SIGTERM
            ref = self.task.remote(
                list(command), os.path.abspath(log), os.getcwd(), self.settings,
                folder and os.path.abspath(folder), self.naming,
            )  # fmt: skip
            self.pending.add(ref)
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as e:  # lost after its retries, or cancelled
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"--- lost: {type(e).__name__}: {str(e).splitlines()[0]}\n")
            return -1
        finally:
            with self._lock:
                self.pending.discard(ref)

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            pending = list(self.pending)
        for ref in pending:
            self.ray.cancel(ref)  # KeyboardInterrupt in the task: it ends its run with SIGTERM

    def close(self) -> None:
        self.ray.shutdown()


def run_all(engine: Engine, commands: list[tuple[Sequence[str], str]]) -> list[int]:
    """Run each (command, log) on `engine`, all at once; return their exit codes."""
    with concurrent.futures.ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda i: engine.run(*commands[i], slot=i), range(len(commands))))
