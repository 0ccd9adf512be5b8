"""The work folder of a run: its settings, Orbax checkpoints of every replica's whole training
state, TensorBoard event files and records, written by one process at a time.

    DIR/config.json       every setting, the training split's size, the command line and the
                          library versions
    DIR/checkpoints/N/    the state after step N: replicas (parameters, optimiser state, weight
                          average, epoch order, keys) and progress (step, history, divergence)
    DIR/tensorboard/seed_S/   one event stream per replica
    DIR/results.jsonl     the run's records

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a crash
while writing leaves the previous checkpoints as they were.
"""

import dataclasses
import fcntl
import functools
import json
import os
import warnings

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy
import tensorboardX

from mlp_jax import results, train
from mlp_jax.config import Config
from mlp_jax.data import IMAGE_SHAPE, Dataset
from mlp_jax.errors import InputError

CONFIG_FILE = "config.json"
# Settings a resumed run may change: they move no number the run computes.
RESUMABLE = ("name", "data_dir", "devices", "parallel", "checkpoint_every", "keep_checkpoints")
WHICH = ("latest", "best")


def _is_key(leaf) -> bool:
    return jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def storable(tree):
    """Replace typed PRNG keys by their uint32 data, which Orbax stores like any array."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract_raw(leaf) -> jax.ShapeDtypeStruct:
    """Return the shape, dtype and placement a leaf of `fresh` is stored with."""
    stored = jax.eval_shape(jax.random.key_data, leaf) if _is_key(leaf) else leaf
    return jax.ShapeDtypeStruct(stored.shape, stored.dtype, sharding=leaf.sharding)


def _typed(raw, like):
    """Turn the key data in `raw` back into keys where `like` holds keys."""
    return jax.tree.map(lambda r, t: jax.random.wrap_key_data(r) if _is_key(t) else r, raw, like)


def differing_settings(saved: dict, cfg: Config) -> list[str]:
    """Return `name saved (here now)` for each setting that differs from the saved run's."""
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return [
        f"--{k} {saved.get(k)!r} (here {v!r})"
        for k, v in now.items()
        if k not in RESUMABLE and saved.get(k) != v
    ]


class Workdir:
    """A run's work folder, locked for this process; a `train.Store` for `train.fit`."""

    def __init__(self, path: str, cfg: Config, command: str, versions: dict):
        self.path, self.cfg = path, cfg
        try:
            os.makedirs(path, exist_ok=True)
            self._lock = open(os.path.join(path, ".lock"), "a")  # noqa: SIM115 - held till exit
        except OSError as e:
            raise InputError(f"--workdir {path!r} cannot be written ({e.strerror})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"--workdir {path!r} is in use by another process; wait for it or use another "
                "folder"
            ) from None
        self.config_path = os.path.join(path, CONFIG_FILE)
        self.command, self.versions = command, versions
        if os.path.exists(self.config_path):
            differ = differing_settings(read_config(path)["config"], cfg)
            if differ:
                raise InputError(
                    f"--workdir {path!r} holds a run with other settings: {', '.join(differ)}; "
                    "use those settings to resume it, or another --workdir"
                )
        self.manager = manager(path, cfg.keep_checkpoints)
        self.writers: dict[int, tensorboardX.SummaryWriter] = {}

    def restore(self, fresh: train.Replica) -> tuple[train.Replica, train.Progress] | None:
        """Return the last usable checkpoint's replicas and progress, or None for a new run
        (whose config.json is then written)."""
        if not os.path.exists(self.config_path):
            settings = {
                "config": dataclasses.asdict(self.cfg),
                "train_images": fresh.order.shape[-1],  # shapes the replicas, for `load`
                "command": self.command,
                "versions": self.versions,
            }
            with open(self.config_path + ".tmp", "w", encoding="utf-8") as f:
                f.write(json.dumps(settings, indent=1) + "\n")
            os.replace(self.config_path + ".tmp", self.config_path)
        return restore(self.manager, fresh, self.path)

    def save(self, replicas: train.Replica, progress: train.Progress) -> None:
        """Save a checkpoint of `replicas` and `progress` at `progress.step`."""
        metrics = None
        if progress.history and progress.history[-1]["step"] == progress.step:
            accuracies = [a for a in progress.history[-1]["val_accuracy"] if a == a]  # not NaN
            metrics = {"val_accuracy": sum(accuracies) / len(accuracies) if accuracies else 0.0}
        self.manager.save(
            progress.step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(storable(replicas)),
                progress=ocp.args.JsonSave(dataclasses.asdict(progress)),
            ),
            metrics=metrics,
            force=True,
        )
        self.manager.wait_until_finished()

    def log(self, entry: dict) -> None:
        """Write one evaluation's scalars to each replica's TensorBoard event stream."""
        for r in range(self.cfg.num_seeds):
            seed = self.cfg.seed + r
            if seed not in self.writers:
                self.writers[seed] = tensorboardX.SummaryWriter(
                    os.path.join(self.path, "tensorboard", f"seed_{seed}")
                )
                self.writers[seed].add_text("config", self.cfg.describe(), entry["step"])
            writer = self.writers[seed]
            for key in ("train_loss", "val_accuracy", "test_accuracy"):
                writer.add_scalar(key, entry[key][r], entry["step"])
            for key in ("learning_rate", "steps_per_sec"):
                writer.add_scalar(key, entry[key], entry["step"])
            writer.flush()

    def record(self, records: list[dict], out: str) -> bool:
        """Append a finished run's records to the folder's results.jsonl and to `out`, each
        file once (REACHED lists the `out` files reached): a run started again after a
        failed append to `out` appends what its first start recorded; return whether any file
        got records now."""
        own = os.path.join(self.path, "results.jsonl")
        kept = results.read(own) if os.path.exists(own) else []
        done = {(r["seed"], r["steps"]) for r in kept}
        new = not all((r["seed"], r["steps"]) in done for r in records)
        if new:
            results.append(records, own)
        else:
            wanted = {(r["seed"], r["steps"]) for r in records}
            records = [r for r in kept if (r["seed"], r["steps"]) in wanted]
        reached = _reached(self.path)
        if os.path.realpath(out) in reached | {os.path.realpath(own)}:
            return new
        results.append(records, out)
        _mark_reached(self.path, reached | {os.path.realpath(out)})
        return True

    def close(self) -> None:
        """Release the folder: close the event files, the checkpoint manager and the lock."""
        for writer in self.writers.values():
            writer.close()
        self.manager.close()
        self._lock.close()


REACHED = "recorded.json"  # in a work folder: the --out files its records reached


def _reached(path: str) -> set[str]:
    """Return the real paths of the --out files the records of work folder `path` reached."""
    if not os.path.exists(os.path.join(path, REACHED)):
        return set()
    with open(os.path.join(path, REACHED), encoding="utf-8") as f:
        return set(json.load(f))


def _mark_reached(path: str, reached: set[str]) -> None:
    """Write the --out files the records of work folder `path` reached, atomically."""
    marker = os.path.join(path, REACHED)
    with open(marker + ".tmp", "w", encoding="utf-8") as f:
        f.write(json.dumps(sorted(reached), indent=1) + "\n")
    os.replace(marker + ".tmp", marker)


def _metric(metrics: dict) -> float:
    return metrics["val_accuracy"]


def manager(path: str, keep: int = 3) -> ocp.CheckpointManager:
    """Return the Orbax manager of `path`/checkpoints: the latest `keep` and the best kept."""
    policy = preservation_policy.AnyPreservationPolicy(
        [
            preservation_policy.LatestN(keep),
            preservation_policy.BestN(get_metric_fn=_metric, n=1),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        best_fn=_metric,
        enable_async_checkpointing=False,
    )
    return ocp.CheckpointManager(
        os.path.abspath(os.path.join(path, "checkpoints")), options=options
    )


def _restore_step(mgr: ocp.CheckpointManager, step: int, fresh: train.Replica):
    abstract = jax.tree.map(_abstract_raw, fresh)
    restored = mgr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()
        ),
    )
    return _typed(restored.state, fresh), train.Progress(**restored.progress)


def restore(
    mgr: ocp.CheckpointManager, fresh: train.Replica, path: str, which: str = "latest"
) -> tuple[train.Replica, train.Progress] | None:
    """Restore the latest (or best) checkpoint shaped like `fresh`; fall back to earlier ones,
    with a warning, when it cannot be read; None when there is none."""
    steps = sorted(mgr.all_steps(), reverse=True)
    if which == "best" and mgr.best_step() is not None:
        steps = [mgr.best_step()] + [s for s in steps if s != mgr.best_step()]
    for step in steps:
        try:
            return _restore_step(mgr, step, fresh)
        except Exception as e:  # a damaged checkpoint: any reader error
            warnings.warn(
                f"{path}: checkpoint {step} cannot be read ({type(e).__name__}); trying an "
                "earlier one",
                stacklevel=2,
            )
    if steps:
        raise InputError(f"--workdir {path!r} has no usable checkpoint: all {len(steps)} damaged")
    return None


@dataclasses.dataclass
class Saved:
    """A trained model read back from a work folder."""

    cfg: Config
    replicas: train.Replica
    progress: train.Progress
    seeds: list[int]


def read_config(path: str) -> dict:
    """Return the config.json of the work folder `path`."""
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise InputError(f"--workdir {path!r} holds no run ({CONFIG_FILE} is missing)")
    with open(config_path, encoding="utf-8") as f:
        return json.load(f)


def load(path: str, which: str = "latest") -> Saved:
    """Read the latest (or best) checkpoint of the work folder `path`, without any data."""
    if which not in WHICH:
        raise InputError(f"unknown --checkpoint {which!r}; accepted: {', '.join(WHICH)}")
    settings = read_config(path)
    cfg = Config(**{**settings["config"], "hidden": tuple(settings["config"]["hidden"])})
    mgr = manager(path)  # read-only mode would log two warnings; loading saves nothing
    try:
        restored = restore(mgr, abstract_replicas(cfg, settings["train_images"]), path, which)
    finally:
        mgr.close()
    if restored is None:
        raise InputError(f"--workdir {path!r} has no checkpoint yet")
    return Saved(cfg, restored[0], restored[1], [cfg.seed + i for i in range(cfg.num_seeds)])


def abstract_replicas(cfg: Config, num_train: int) -> train.Replica:
    """Return the shapes of the replicas `cfg`'s run makes from `num_train` training images."""
    pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    images, labels = (
        jax.ShapeDtypeStruct((0, pixels), jnp.float32),
        jax.ShapeDtypeStruct((0,), jnp.int32),
    )
    data = Dataset(
        jax.ShapeDtypeStruct((num_train, pixels), jnp.float32),
        jax.ShapeDtypeStruct((num_train,), jnp.int32),
        images,
        labels,
        images,
        labels,
    )
    shapes = jax.eval_shape(
        functools.partial(train.init_replicas, cfg), jnp.arange(cfg.num_seeds), data
    )
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)
