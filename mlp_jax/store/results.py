"""Run records: one JSON object per run, appended atomically to a JSON-lines file.

A record holds one seed of one run, with the fields of RECORD_FIELDS (JSON null for none), and
any an entry point adds (`noise`: corrupted_test_accuracy; `time_to_accuracy`: reached_at_step,
seconds_to_target, train_seconds_to_target):

    name                       str: the run's name, a grid row's or built from the architecture
    config                     object: every Config setting of the run
    seed                       int: the seed of this replica
    dataset                    str: the dataset trained on, e.g. "mnist"
    data_digest                object | null: with --data_dir, each IDX file's name and the md5
                               of its uncompressed bytes; null when read through TFDS
    test_accuracy              float | null: final test accuracy; null if diverged
    ensemble_test_accuracy     float | null: test accuracy of the softmax averaged over the
                               finished (not diverged) replicas trained together; null for a
                               lone replica, or when every replica diverged
    ensemble_members           int | null: how many replicas entered that average
    val_accuracy               float | null: final validation accuracy; null if diverged
    train_loss                 float | null: mean loss over the last evaluation interval
    steps                      int: training steps
    resumed_from_step          int: the step this process started from (0: from scratch; more:
                               resumed from its work folder's checkpoint)
    diverged                   bool: whether the loss became NaN or infinite
    diverged_at_step           int | null: the first step whose loss was not finite
    n_params                   int: parameters of one replica
    compile_seconds            float: compilation time
    train_seconds              float: training time of the replicas trained together
    eval_seconds               float: evaluation time
    steps_per_sec              float: training steps per second, compilation and evaluation excluded
    replicas_trained_together  int: seeds trained in the same process (they share the timings)
    platform                   str: JAX platform, e.g. "cpu" or "gpu"
    device                     str: device kind, e.g. "NVIDIA H100 80GB HBM3"
    device_count               int: devices the run trained on
    cpus                       int: CPUs of the host
    host                       str: name of the machine that ran the run (socket.gethostname)
    ray_node                   str | null: the Ray node that ran it (launch --engine=ray)
    versions                   object: versions of jax, flax and optax
    time                       str: UTC time the record was made, ISO 8601
    history                    list: per evaluation, step, train_loss, val_accuracy, test_accuracy

Records written before a field existed may lack it; `read` keeps every line that has at least
REQUIRED_FIELDS.
"""

from collections.abc import Sequence
import dataclasses
import datetime
import errno
import fcntl
import json
import math
import os
import socket
import stat
import warnings

import flax
import jax
import numpy as np
import optax

from mlp_jax.core.config import Config, fields_with
from mlp_jax.core.errors import InputError, MachineError
from mlp_jax.core.train import FitResult

RECORD_FIELDS = (
    "name",
    "config",
    "seed",
    "dataset",
    "data_digest",
    "test_accuracy",
    "ensemble_test_accuracy",
    "ensemble_members",
    "val_accuracy",
    "train_loss",
    "steps",
    "resumed_from_step",
    "diverged",
    "diverged_at_step",
    "n_params",
    "compile_seconds",
    "train_seconds",
    "eval_seconds",
    "steps_per_sec",
    "replicas_trained_together",
    "platform",
    "device",
    "device_count",
    "cpus",
    "host",
    "ray_node",
    "versions",
    "time",
    "history",
)
REQUIRED_FIELDS = ("name", "seed", "config")  # what telling recorded runs apart needs
RAY_NODE_ENV = "MLP_JAX_RAY_NODE"  # set by the Ray engine to the node id a run's task runs on
# Settings that change what a run computes by float rounding at most, left out when runs are
# matched.
NOT_PROTOCOL = fields_with("label", "placement", "replica", "reporting")


def _finite(value: float) -> float | None:
    """Return `value` as a float, or None when it is NaN or infinite (JSON has neither)."""
    return float(value) if math.isfinite(value) else None


def default_name(cfg: Config) -> str:
    """Return a run name built from the architecture, e.g. mlp-625x441-relu6."""
    return cfg.name or f"mlp-{'x'.join(map(str, cfg.hidden)) or 'linear'}-{cfg.act}"


def committee_sources(paths: Sequence[str]) -> str:
    """Return how a committee's sources are told, a folder once per checkpoint: `2 folders`, or
    `3 checkpoints of 2 folders` when a folder gives several."""
    distinct = len({os.path.normpath(path) for path in paths})
    named = f"{distinct} folder{'s' * (distinct != 1)}"
    return named if distinct == len(paths) else f"{len(paths)} checkpoints of {named}"


def environment() -> dict:
    """Return the platform, device kind and library versions this process runs on."""
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device": device.device_kind,
        "cpus": os.cpu_count(),
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__},
    }


def run_records(
    cfg: Config,
    result: FitResult,
    dataset: str,
    data_digest: tuple[tuple[str, str], ...] = (),
) -> list[dict]:
    """Return one record per replica of `result`, in the schema of the module docstring;
    `data_digest` is the data's (`Dataset.digest`)."""
    shared = {
        "name": default_name(cfg),
        "config": dataclasses.asdict(cfg),
        "dataset": dataset,
        "data_digest": dict(data_digest) or None,
        "steps": result.steps,
        "resumed_from_step": result.steps - result.trained_steps,
        "ensemble_test_accuracy": result.ensemble_test_accuracy,
        "ensemble_members": result.ensemble_members,
        "n_params": result.n_params,
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "steps_per_sec": result.steps_per_sec,
        "replicas_trained_together": len(result.seeds),
        "device_count": result.device_count,
        **environment(),
        "host": socket.gethostname(),
        "ray_node": os.environ.get(RAY_NODE_ENV),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    records = []
    for r, seed in enumerate(result.seeds):
        diverged_at = result.diverged_at_step[r]
        final = {
            key: None if diverged_at is not None else _finite(getattr(result, key)[r])
            for key in ("test_accuracy", "val_accuracy", "train_loss")
        }
        history = [
            {
                "step": entry["step"],
                **{
                    key: _finite(entry[key][r])
                    for key in ("train_loss", "val_accuracy", "test_accuracy")
                },
            }
            for entry in result.history
        ]
        records.append(
            {
                **shared,
                "seed": seed,
                **final,
                "diverged": diverged_at is not None,
                "diverged_at_step": diverged_at,
                "history": history,
            }
        )
    return records


def append(records: list[dict], path: str) -> None:
    """Append `records` to the JSON-lines file `path` whole or not at all: one locked write,
    checked and fsynced; on a failure the file is cut back to its size before and MachineError
    names the file and the cause."""
    payload = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records).encode()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # never glue a record onto a fragment
            payload = b"\n" + payload
        try:
            _write_all(fd, payload)
            os.fsync(fd)
        except OSError as e:
            raise MachineError(
                f"cannot append {len(records)} record{'s' * (len(records) != 1)} to {path}: "
                f"{e.strerror}; {_restore_size(fd, size)}"
            ) from None
    finally:
        os.close(fd)


def _write_all(fd: int, payload: bytes) -> None:
    """Write all of `payload`, continuing after short writes; OSError when no byte goes."""
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _restore_size(fd: int, size: int) -> str:
    """Cut a regular file back to `size` bytes; return what state the file is left in."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return "nothing was written"
    try:
        os.ftruncate(fd, size)
    except OSError as e:
        return f"cutting it back failed too ({e.strerror}): its last line may be cut off"
    return "the file is as it was"


def check_appendable(path: str) -> None:
    """Raise InputError unless records can be appended to `path` (checked before training)."""
    if os.path.isdir(path):
        raise InputError(f"--out {path!r} is a folder; accepted: a JSON-lines file path")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise InputError(
            f"--out {path!r} cannot be written ({e.strerror}); accepted: a file path in a "
            "writable folder"
        ) from None


def write_text(path: str, text: str) -> str:
    """Write a text file (a table, a printout), making its folder; return the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _record(line: bytes, fields: tuple[str, ...]) -> dict | str:
    """Return the run record on one line of a results file, or why the line holds none."""
    try:
        record = json.loads(line.decode("utf-8"))
    except ValueError:  # undecodable bytes or not JSON, e.g. cut off by a crash
        return "not a run record"
    if not isinstance(record, dict) or not all(key in record for key in REQUIRED_FIELDS):
        return "not a run record"
    if not isinstance(record["config"], dict):
        return "not a run record"
    missing = [key for key in fields if key not in record]
    return f"a run record without {', '.join(missing)}" if missing else record


def read(path: str, fields: tuple[str, ...] = ()) -> list[dict]:
    """Return the records of a JSON-lines file that have REQUIRED_FIELDS and `fields`, warning of
    each line skipped (cut off, not JSON, not a record, a field missing); a complete last record
    without its newline is kept."""
    with open(path, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_SH)  # never half of an append in progress
        lines = f.read().split(b"\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = _record(line, fields)
        if isinstance(record, str):
            warnings.warn(f"{path}:{number}: skipped, {record}", stacklevel=2)
        else:
            records.append(record)
    return records


def protocol(config: dict) -> str:
    """Return a canonical string of the settings that determine what a run computes.

    A setting missing from an older record takes its default, which reproduces older runs.
    """
    full = {**dataclasses.asdict(Config()), **config}
    kept = {k: v for k, v in full.items() if k not in NOT_PROTOCOL}
    return json.dumps(kept, sort_keys=True)


def done_seeds(records: list[dict], name: str, config: dict) -> set[int]:
    """Return the seeds already recorded for run `name` under the protocol of `config`."""
    key = protocol(config)
    return {r["seed"] for r in records if r["name"] == name and protocol(r["config"]) == key}


def summarize(values: list[float]) -> tuple[float, float, int]:
    """Return mean, sample standard deviation (0 for one value) and count."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return float(array.mean()), std, len(array)
