"""Run records: one JSON object per run, appended atomically to a JSON-lines file."""

import dataclasses
import datetime
import fcntl
import json
import math
import os

import flax
import jax
import numpy as np
import optax

from mlp_jax.config import Config
from mlp_jax.train import FitResult

RECORD_FIELDS = (
    "name",
    "config",
    "seed",
    "dataset",
    "test_accuracy",
    "val_accuracy",
    "train_loss",
    "steps",
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
    "versions",
    "time",
    "history",
)
# Settings that change what a run computes by float rounding at most, left out when runs are
# matched.
NOT_PROTOCOL = ("name", "seed", "num_seeds", "data_dir", "eval_every", "devices", "parallel")


def _finite(value: float) -> float | None:
    """Return `value` as a float, or None when it is NaN or infinite (JSON has neither)."""
    return float(value) if math.isfinite(value) else None


def default_name(cfg: Config) -> str:
    """Return a run name built from the architecture, e.g. mlp-625x441-relu6."""
    return cfg.name or f"mlp-{'x'.join(map(str, cfg.hidden)) or 'linear'}-{cfg.act}"


def environment() -> dict:
    """Return the platform, device kind and library versions this process runs on."""
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device": device.device_kind,
        "cpus": os.cpu_count(),
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__},
    }


def run_records(cfg: Config, result: FitResult, dataset: str) -> list[dict]:
    """Return one record per replica of `result`, in the schema of DESIGN.md."""
    shared = {
        "name": default_name(cfg),
        "config": dataclasses.asdict(cfg),
        "dataset": dataset,
        "steps": result.steps,
        "n_params": result.n_params,
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "steps_per_sec": result.steps_per_sec,
        "replicas_trained_together": len(result.seeds),
        "device_count": result.device_count,
        **environment(),
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
    """Append `records` to the JSON-lines file `path` in one locked write, then fsync."""
    payload = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records).encode()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: str, text: str) -> str:
    """Write a text file (a table, a printout), making its folder; return the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def read(path: str) -> list[dict]:
    """Return the records of a JSON-lines file, skipping a last line cut off by a crash."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.endswith("\n") and line.strip()]


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
