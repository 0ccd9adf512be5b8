"""Training on several devices: each step's batch split across them, or the replicas spread.

--devices=N takes the first N visible devices of the default platform (0: all). --parallel=batch
splits each step's batch across them (data parallelism over a jax.sharding.Mesh, gradients
all-reduced by XLA); --parallel=seeds spreads the --num_seeds replicas over them instead, with no
communication (--num_seeds a multiple of the device count). Either way a run computes what a
single-device run computes, up to float rounding. With JAX_COORDINATOR_ADDRESS set, every entry
point first calls jax.distributed.initialize() (JAX_NUM_PROCESSES, JAX_PROCESS_ID, or SLURM, Open
MPI or TPU settings); the mesh then spans every process's devices, and process 0 alone writes the
records. On a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=4 makes four devices, and
`python -m experiments.mlp --num_seeds=4 --parallel=seeds` trains on them: a correctness check,
not a speed-up.
"""

from collections.abc import Sequence
import dataclasses
import os

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding, SingleDeviceSharding

from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError

# Set by a multi-host launcher; jax.distributed.initialize() reads it (and the cluster's own
# variables, e.g. SLURM's, for the process count and index).
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"


def initialize_distributed() -> None:
    """Join a multi-host run when a coordinator address is set."""
    if os.environ.get(COORDINATOR_ENV):
        count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        jax.distributed.initialize(
            num_processes=int(count) if count else None, process_id=int(index) if index else None
        )


def select_devices(requested: int, visible: Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """Return the first `requested` visible devices (every one for 0)."""
    visible = list(visible or jax.devices())
    if requested > len(visible):
        raise InputError(
            f"--devices {requested} asks for more devices than the "
            f"{len(visible)} visible; accepted: 0..{len(visible)}"
        )
    return visible[: requested or len(visible)]


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where training's arrays live, and how each step's batch is split."""

    devices: tuple[jax.Device, ...]
    replicas: Sharding  # the stacked replicas (parameters, optimiser state, keys)
    whole: Sharding  # a full copy on every device: the dataset, losses and accuracy counts
    batch: NamedSharding | None  # the layout each step's batch is constrained to


def placement(cfg: Config, devices: Sequence[jax.Device]) -> Placement:
    """Return the layout of `cfg`'s run on `devices`: data parallel, or replicas spread."""
    devices = tuple(devices)
    if len(devices) == 1:
        single = SingleDeviceSharding(devices[0])
        return Placement(devices, single, single, None)
    mesh = Mesh(devices, (cfg.parallel,))
    whole = NamedSharding(mesh, PartitionSpec())
    if cfg.parallel == "batch":
        return Placement(devices, whole, whole, NamedSharding(mesh, PartitionSpec("batch")))
    if cfg.num_seeds % len(devices):
        raise InputError(
            f"--parallel=seeds spreads --num_seeds {cfg.num_seeds} over "
            f"{len(devices)} devices; accepted: a multiple of {len(devices)}, or "
            "--devices dividing it"
        )
    return Placement(devices, NamedSharding(mesh, PartitionSpec("seeds")), whole, None)
