"""What a run needs of the machine, estimated before it starts: memory for training, disk for a
checkpoint. A run that cannot fit is refused with one line naming both numbers (MachineError).

Training needs the replicas' state, a gradient and a batch's activations, weighed against the
host's available memory or the accelerator's free memory (an XLA out-of-memory error during
training still ends with one line, from experiments/cli.py). Each checkpoint's size is checked
against the free disk before it is saved."""

from collections.abc import Sequence
import functools
import math
import os
import shutil

import jax
import jax.numpy as jnp

from mlp_jax.core import train
from mlp_jax.core.config import Config
from mlp_jax.core.data import Dataset
from mlp_jax.core.errors import MachineError

FLOAT_BYTES = 4  # float32 activations and gradients


def tree_bytes(tree) -> int:
    """Return the bytes of every array (or array shape) in `tree`."""
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def gigabytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def training_bytes(cfg: Config, data: Dataset) -> int:
    """Return roughly the memory that training `cfg`'s replicas on `data` takes beyond the data:
    their state (parameters, optimiser state, weight average, epoch order), a gradient, the
    activations of a batch and of evaluating a whole split, and the ensemble's probabilities."""
    seeds = jax.ShapeDtypeStruct((cfg.num_seeds,), jnp.int32)
    state = jax.eval_shape(functools.partial(train.init_replicas, cfg), seeds, data)
    units = sum(cfg.hidden) + 10  # every layer's outputs, one float per image
    split = max(data.val_x.shape[0], data.test_x.shape[0])
    per_replica = FLOAT_BYTES * (2 * cfg.batch_size * units + split * units + split * 10)
    return tree_bytes(state) + tree_bytes(state.params) + cfg.num_seeds * per_replica


def host_available() -> int:
    """Return the host memory available to a new allocation (Linux MemAvailable)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def available_bytes(devices: Sequence[jax.Device]) -> tuple[int, str]:
    """Return the free memory of the least free of this process's `devices` (the host's for
    CPUs), and what it is."""
    local = [d for d in devices if d.process_index == jax.process_index()]  # others cannot say
    stats = [d.memory_stats() for d in local]
    if all(s and "bytes_limit" in s for s in stats):
        free = min(s["bytes_limit"] - s.get("bytes_in_use", 0) for s in stats)
        return free, f"free on each {local[0].device_kind}"
    return host_available(), "host memory available"


def check_memory(cfg: Config, data: Dataset, devices: Sequence[jax.Device]) -> None:
    """Raise MachineError when training `cfg` on `devices` needs more memory than they have."""
    needed = training_bytes(cfg, data)
    if cfg.parallel == "seeds" and devices[0].platform != "cpu":
        needed //= len(devices)  # the replicas are spread over the devices
    free, what = available_bytes(devices)
    if needed > free:
        raise MachineError(
            f"the run needs about {gigabytes(needed)} of memory, {gigabytes(free)} {what}; "
            "accepted: fewer --num_seeds, smaller --hidden or --batch_size, or a machine with "
            "more memory"
        )


def check_disk(path: str, needed: int) -> None:
    """Raise MachineError when the disk holding `path` has less than `needed` bytes free."""
    free = shutil.disk_usage(path).free
    if needed > free:
        raise MachineError(
            f"a checkpoint in {path} needs about {needed / 2**20:.1f} MiB, "
            f"{free / 2**20:.1f} MiB free on its disk"
        )
