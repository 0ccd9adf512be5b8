"""The work folder of a run: its settings, Orbax checkpoints of every replica's whole training
state, TensorBoard event files and records, written by one process at a time.

    DIR/config.json       every setting, the training split's size, the data's digest (each IDX
                          file's md5; null through TFDS), the command line and the library
                          versions, written once the run is accepted
    DIR/checkpoints/N/    the state after step N: replicas (parameters, optimiser state, weight
                          average, epoch order, keys) and progress (step, history, divergence)
    DIR/checkpoints/N/digest.json   written last: the SHA-256 of every other file of the
                          checkpoint and the settings it was trained under, itself sealed
    DIR/tensorboard/seed_S/   one event stream per replica
    DIR/results.jsonl     the run's records

`Workdir` composes one part per job: `Settings` (the lock, config.json and the settings check),
`Checkpoints` (Orbax, digests, restore and save) and `EventLog` (TensorBoard); it keeps the
records (each file once, `recorded.json`) itself.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a crash
while writing leaves the previous checkpoints as they were. A checkpoint is used only when its
files match its digest: the files on disk are hashed, not the arrays read back, as Orbax reads
garbled bytes back without complaint. One without its digest (cut off before it, or half
deleted) or not matching it is damaged: it is skipped for the one before it, with one warning,
and deleted when the folder is opened for training, so the run ends as one never interrupted;
loading a saved model (evaluate, predict) deletes nothing. With every checkpoint damaged,
training and loading stop with one error line (exit code 2): delete the folder to start afresh;
but a single checkpoint without its digest is what a run killed while saving its only one
leaves (its first; any with --keep_checkpoints=1): training deletes it, with one warning, and
starts from step 0.

A checkpoint is written at each evaluation (and every --checkpoint_every and --keep_every
steps); the latest --keep_checkpoints, the best evaluated by mean validation accuracy and, with
--keep_every=N, those of the steps that are multiples of N (snapshots: `load` reads one by its
step) are kept, no other.
Resuming is exact: the same command with the same folder continues from its last checkpoint and,
on the CPU, ends with the parameters and records (timings aside) of a run never interrupted, even
after kill -9. A folder whose run has other settings or other data files (their digest) is
refused with one line naming both (the checkpoints' digests still know them if config.json is
deleted; a folder made before runs kept their data's digest is not checked for it); so is a
second process on the folder, and a config.json that contradicts the checkpoints' sealed settings
(their shapes would not match), deleting nothing. A refused run writes no config.json. A finished
run started again trains nothing, and records nothing unless its records did not reach --out
(DIR/recorded.json lists the files they reached): then it appends them now. The TensorBoard
events hold each replica's train loss, validation and test accuracy, learning rate and steps/s at
every evaluation, and the settings as text (`tensorboard --logdir runs/` shows a grid's runs side
by side).
"""

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy
import tensorboardX

from mlp_jax.core import config, data, memory, train
from mlp_jax.core.config import Config
from mlp_jax.core.data import IMAGE_SHAPE, Dataset
from mlp_jax.core.errors import InputError
from mlp_jax.store import results

CONFIG_FILE = "config.json"
DIGEST_FILE = "digest.json"
# Settings a resumed run may change: they move no number the run computes.
RESUMABLE = config.fields_with("label", "placement")
WHICH = ("latest", "best")  # which checkpoint `load` reads, besides one named by its step
WHICH_ACCEPTED = "latest, best or a step number"
HPARAM_METRICS = ("val_accuracy", "test_accuracy", "train_loss")  # a record's, beside its settings


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
    """Return `name saved (here now)` for each setting that differs from the saved run's; a
    setting newer than the saved run takes its default, as `load` reads config.json."""
    saved = {**config.to_dict(Config()), **saved}
    return [
        f"--{k} {saved.get(k)!r} (here {v!r})"
        for k, v in config.to_dict(cfg).items()
        if k not in RESUMABLE and saved.get(k) != v
    ]


def _write_json(path: str, value) -> None:
    """Write `value` as indented JSON to `path`, atomically and on the disk before it is named."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(json.dumps(value, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def run_settings(cfg: Config, train_images: int, data_digest: tuple[tuple[str, str], ...]) -> dict:
    """Return what a run is trained under: its settings, the training split's size (which shapes
    the replicas, for `load`) and its data's digest (`Dataset.digest`; null through TFDS)."""
    return {
        "config": config.to_dict(cfg),
        "train_images": train_images,
        "data_digest": dict(data_digest) or None,
    }


def _data_md5(digest: dict | None, file: str) -> str:
    """Return how data of digest `digest` are known by IDX `file`: its md5 and release, or TFDS."""
    if digest is None:
        return "read through TFDS"
    return "md5 " + data.known_md5(file, digest[file]) if file in digest else "missing"


def data_difference(trained: dict | None, other: dict | None, where: str) -> str:
    """Return the first IDX file whose md5 differs between a run's data and `other` data (`where`
    says whose): `FILE md5 A (mnist's) in the run, B (fashion_mnist's) here`."""
    files = list(trained or other or {})
    file = next(f for f in files if (trained or {}).get(f) != (other or {}).get(f))
    given = _data_md5(other, file).removeprefix("md5 ")
    return f"{file} {_data_md5(trained, file)} in the run, {given} {where}"


def check_data(path: str, settings: dict, data_digest: tuple[tuple[str, str], ...]) -> None:
    """Raise InputError naming both unless `data_digest` (`Dataset.digest`) is the digest of the
    data the run of work folder `path` was trained on, as its `settings` (`run_settings`) keep
    it; a folder made before runs kept their data's digest is not checked."""
    if "data_digest" not in settings or settings["data_digest"] == (dict(data_digest) or None):
        return
    source = settings["config"].get("data_dir")
    raise InputError(
        f"--workdir {path!r} was trained on other data: "
        f"{data_difference(settings['data_digest'], dict(data_digest) or None, 'here')}; "
        "accepted: the data it was trained on"
        + (f" (--data_dir={source})" if source else "")
        + ", or another --workdir"
    )


class Settings:
    """A work folder's lock and settings: one process at a time, and a run only under the
    settings of the run the folder holds, which config.json keeps."""

    def __init__(
        self,
        path: str,
        cfg: Config,
        command: str,
        versions: dict,
        data_digest: tuple[tuple[str, str], ...],
    ):
        self.cfg, self.command, self.versions = cfg, command, versions
        self.data_digest = data_digest
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
        # Without config.json (deleted), the checkpoints still know their settings.
        exists = os.path.exists(self.config_path)
        saved = read_config(path) if exists else recorded_settings(path)
        differ = differing_settings(saved["config"], cfg) if saved else []
        if differ:
            raise InputError(
                f"--workdir {path!r} holds a run with other settings: {', '.join(differ)}; "
                "use those settings to resume it, or another --workdir"
            )
        if saved:
            check_data(path, saved, data_digest)

    def write(self, train_images: int) -> None:
        """Write config.json unless it is there: the run's settings (`run_settings`), the
        command line and the library versions."""
        if not os.path.exists(self.config_path):
            settings = {
                **run_settings(self.cfg, train_images, self.data_digest),
                "command": self.command,
                "versions": self.versions,
            }
            _write_json(self.config_path, settings)

    def close(self) -> None:
        """Release the lock."""
        self._lock.close()


def progress_json(progress: train.Progress) -> dict:
    """Return `progress` as a checkpoint's JSON holds it: the interval's losses as lists."""
    losses = np.asarray(progress.interval_losses, np.float32).tolist()
    return {**dataclasses.asdict(progress), "interval_losses": losses}


def progress_from_json(saved: dict) -> train.Progress:
    """Return the Progress of a checkpoint's JSON, `progress_json`'s inverse."""
    return train.Progress(
        **{**saved, "interval_losses": np.array(saved["interval_losses"], np.float32)}
    )


class Checkpoints:
    """A work folder's Orbax checkpoints of the whole training state, each sealed by a digest."""

    def __init__(self, path: str, cfg: Config, data_digest: tuple[tuple[str, str], ...]):
        self.path, self.cfg, self.data_digest = path, cfg, data_digest
        self.manager = manager(path, cfg.keep_checkpoints, cfg.keep_every)

    def restore(self, fresh: train.Replica) -> tuple[train.Replica, train.Progress] | None:
        """Return the last usable checkpoint's replicas and progress, or None for a new run."""
        return restore(self.manager, fresh, self.cfg, self.path, owner=True)

    def save(self, replicas: train.Replica, progress: train.Progress) -> None:
        """Save a checkpoint of `replicas` and `progress` at `progress.step`, once the disk has
        room for it: Orbax meets a full disk with many lines of tracebacks from its threads."""
        memory.check_disk(self.path, memory.tree_bytes(replicas) + 2**20)
        metrics = None
        if progress.history and progress.history[-1]["step"] == progress.step:
            accuracies = [a for a in progress.history[-1]["val_accuracy"] if a == a]  # not NaN
            metrics = {"val_accuracy": sum(accuracies) / len(accuracies) if accuracies else 0.0}
        self.manager.save(
            progress.step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(storable(replicas)),
                progress=ocp.args.JsonSave(progress_json(progress)),
            ),
            metrics=metrics,
            force=True,
        )
        self.manager.wait_until_finished()
        settings = run_settings(self.cfg, replicas.order.shape[-1], self.data_digest)
        write_digest(step_folder(self.manager, progress.step), settings)

    def close(self) -> None:
        """Close the checkpoint manager."""
        self.manager.close()


class EventLog:
    """A work folder's TensorBoard event streams, one per replica, opened at the first event."""

    def __init__(self, path: str, cfg: Config):
        self.path, self.cfg = path, cfg
        self.writers: dict[int, tensorboardX.SummaryWriter] = {}

    def _writer(self, seed: int, step: int) -> tensorboardX.SummaryWriter:
        """Return the event stream of replica `seed`, opened (with the settings) if new."""
        if seed not in self.writers:
            folder = os.path.join(self.path, "tensorboard", f"seed_{seed}")
            self.writers[seed] = tensorboardX.SummaryWriter(folder)
            self.writers[seed].add_text("config", self.cfg.describe(), step)
        return self.writers[seed]

    def log(self, evaluation: train.Evaluation) -> None:
        """Write one evaluation's scalars to each replica's event stream, but the non-finite
        ones of a diverged replica (its record says when it diverged)."""
        step = evaluation.step
        for r, seed in enumerate(train.replica_seeds(self.cfg)):
            writer = self._writer(seed, step)
            for key in ("train_loss", "val_accuracy", "test_accuracy"):
                value = float(getattr(evaluation, key)[r])
                if math.isfinite(value):  # not a diverged replica's, nor a search's absent test
                    writer.add_scalar(key, value, step)
            for key in ("learning_rate", "steps_per_sec"):
                writer.add_scalar(key, getattr(evaluation, key), step)
            writer.flush()

    def hparams(self, records: list[dict]) -> None:
        """Write each replica's settings and final metrics as TensorBoard HParams, so that the
        HParams tab compares the runs of a campaign (`tensorboard --logdir OUT/work`)."""
        for record in records:
            settings = {
                key: value if isinstance(value, bool | int | float | str) else json.dumps(value)
                for key, value in record["config"].items()
            }
            metrics = {key: record[key] for key in HPARAM_METRICS if record.get(key) is not None}
            writer = self._writer(record["seed"], record["steps"])
            for summary in tensorboardX.summary.hparams(settings, metrics):
                writer.file_writer.add_summary(summary)
            writer.flush()

    def close(self) -> None:
        """Close the event files."""
        for writer in self.writers.values():
            writer.close()


class Workdir:
    """A run's work folder, locked for this process: its settings, checkpoints, event log and
    records; a `train.Store` for `train.fit`."""

    def __init__(
        self,
        path: str,
        cfg: Config,
        command: str,
        versions: dict,
        data_digest: tuple[tuple[str, str], ...],
    ):
        """Open the work folder `path` for a run of `cfg` on data of digest `data_digest`
        (`Dataset.digest`), started by `command` with the library `versions`."""
        self.path = path
        self.settings = Settings(path, cfg, command, versions, data_digest)
        self.checkpoints = Checkpoints(path, cfg, data_digest)
        self.events = EventLog(path, cfg)

    def restore(self, fresh: train.Replica) -> tuple[train.Replica, train.Progress] | None:
        """Return the last usable checkpoint's replicas and progress, or None for a new run;
        config.json is written after, once the run is accepted (a refused run changes nothing)."""
        restored = self.checkpoints.restore(fresh)
        self.settings.write(fresh.order.shape[-1])
        return restored

    def save(self, replicas: train.Replica, progress: train.Progress) -> None:
        """Save a checkpoint of `replicas` and `progress`."""
        self.checkpoints.save(replicas, progress)

    def kept(self, records: list[dict]) -> list[dict] | None:
        """Return what this folder recorded for the runs of `records` (the same seeds and steps):
        a finished run started again; None when it holds no record of one of them."""
        own = os.path.join(self.path, "results.jsonl")
        kept = results.read(own) if os.path.exists(own) else []
        done = {(r["seed"], r["steps"]): r for r in kept}
        runs = [(r["seed"], r["steps"]) for r in records]
        return [done[run] for run in runs] if all(run in done for run in runs) else None

    def record(self, records: list[dict], out: str) -> bool:
        """Append a finished run's records to the folder's results.jsonl and to `out`, each
        file once (REACHED lists the `out` files reached): a run started again after a
        failed append to `out` appends what its first start recorded; return whether any file
        got records now."""
        own = os.path.join(self.path, "results.jsonl")
        kept = self.kept(records)
        new = kept is None
        if new:
            results.append(records, own)
        else:
            records = kept
        reached = _reached(self.path)
        if os.path.realpath(out) in reached | {os.path.realpath(own)}:
            return new
        results.append(records, out)
        _mark_reached(self.path, reached | {os.path.realpath(out)})
        return True

    def close(self) -> None:
        """Release the folder: close the event files, the checkpoint manager and the lock."""
        self.events.close()
        self.checkpoints.close()
        self.settings.close()


REACHED = "recorded.json"  # in a work folder: the --out files its records reached


def _reached(path: str) -> set[str]:
    """Return the real paths of the --out files the records of work folder `path` reached."""
    if not os.path.exists(os.path.join(path, REACHED)):
        return set()
    with open(os.path.join(path, REACHED), encoding="utf-8") as f:
        return set(json.load(f))


def _mark_reached(path: str, reached: set[str]) -> None:
    """Write the --out files the records of work folder `path` reached, atomically."""
    _write_json(os.path.join(path, REACHED), sorted(reached))


def _metric(metrics: dict) -> float:
    return metrics["val_accuracy"]


@contextlib.contextmanager
def _orbax_quiet():
    """Hold back Orbax's log lines below errors: a damaged checkpoint gets one line, ours."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def manager(path: str, keep: int = 3, keep_every: int = 0) -> ocp.CheckpointManager:
    """Return the Orbax manager of `path`/checkpoints: the latest `keep`, the best and (unless
    0) every `keep_every`-th step's kept."""
    policies = [
        preservation_policy.LatestN(keep),
        # A checkpoint between evaluations has no metrics: LatestN alone keeps it.
        preservation_policy.BestN(
            get_metric_fn=_metric, n=1, keep_checkpoints_without_metrics=False
        ),
    ]
    if keep_every:
        policies.append(preservation_policy.EveryNSteps(keep_every))
    policy = preservation_policy.AnyPreservationPolicy(policies)
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        best_fn=_metric,
        enable_async_checkpointing=False,
    )
    with _orbax_quiet():  # a half-deleted checkpoint's missing metadata: one log line per load
        return ocp.CheckpointManager(
            os.path.abspath(os.path.join(path, "checkpoints")), options=options
        )


def step_folder(mgr: ocp.CheckpointManager, step: int) -> str:
    """Return the folder of checkpoint `step`."""
    return os.path.join(mgr.directory, str(step))


def _file_hashes(folder: str) -> dict[str, str]:
    """Return the SHA-256 of every file in `folder` but its digest, by relative path."""
    hashes = {}
    for root, _, files in os.walk(folder):
        for name in files:
            relative = os.path.relpath(os.path.join(root, name), folder)
            if relative != DIGEST_FILE:
                with open(os.path.join(folder, relative), "rb") as f:
                    hashes[relative] = hashlib.file_digest(f, "sha256").hexdigest()
    return dict(sorted(hashes.items()))


def _seal(settings: dict, files: dict[str, str]) -> str:
    """Return the SHA-256 of a checkpoint's settings and file hashes together."""
    text = json.dumps({"settings": settings, "files": files}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_digest(folder: str, settings: dict) -> None:
    """Write the digest of the finished checkpoint `folder` under `settings`, atomically."""
    settings = json.loads(json.dumps(settings))  # tuples as JSON gives them back
    files = _file_hashes(folder)
    digest = {"settings": settings, "files": files, "sha256": _seal(settings, files)}
    _write_json(os.path.join(folder, DIGEST_FILE), digest)


def _read_digest(folder: str) -> dict:
    """Return the digest of checkpoint `folder`; ValueError if it is missing or not sealed."""
    try:
        with open(os.path.join(folder, DIGEST_FILE), encoding="utf-8") as f:
            digest = json.load(f)
        sealed = digest["sha256"] == _seal(digest["settings"], digest["files"])
    except FileNotFoundError:
        raise ValueError("it has no digest: unfinished or half deleted") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError("its digest is unreadable") from None
    if not sealed:
        raise ValueError("its digest does not match itself")
    return digest


def why_damaged(folder: str) -> str | None:
    """Return why checkpoint `folder` cannot be trusted, or None when its files match its
    digest."""
    try:
        digest = _read_digest(folder)
        files = _file_hashes(folder)
    except ValueError as e:
        return str(e)
    except OSError as e:
        return f"a file is unreadable: {e.strerror}"
    missing = sorted(set(digest["files"]) - set(files))
    if missing:
        return f"{len(missing)} files missing, {missing[0]} first"
    changed = [name for name, sha in digest["files"].items() if files[name] != sha]
    if changed:
        return f"{len(changed)} files differ from the digest, {changed[0]} first"
    return None


def recorded_settings(path: str) -> dict | None:
    """Return the settings (`run_settings`) recorded by the latest checkpoint of work folder
    `path` with a sealed digest, or None when it has none."""
    folder = os.path.join(path, "checkpoints")
    steps = [int(s) for s in os.listdir(folder) if s.isdigit()] if os.path.isdir(folder) else []
    for step in sorted(steps, reverse=True):
        with contextlib.suppress(ValueError):
            return _read_digest(os.path.join(folder, str(step)))["settings"]
    return None


def _restore_step(mgr: ocp.CheckpointManager, step: int, fresh: train.Replica):
    abstract = jax.tree.map(_abstract_raw, fresh)
    with _orbax_quiet():
        restored = mgr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()
            ),
        )
    return _typed(restored.state, fresh), progress_from_json(restored.progress)


def saved_under_other_settings(folder: str, cfg: Config, train_images: int) -> list[str]:
    """Return each setting (and the training split's size) that the sealed checkpoint `folder`
    was saved under where it differs from `cfg`'s run on `train_images` training images."""
    saved = _read_digest(folder)["settings"]
    differ = differing_settings(saved["config"], cfg)
    if saved["train_images"] != train_images:
        differ.append(f"{saved['train_images']} training images (here {train_images})")
    return differ


def _first_usable(
    mgr: ocp.CheckpointManager, steps: list[int], fresh: train.Replica, cfg: Config, path: str
):
    """Return the first of `steps` that is undamaged and readable, its replicas and progress
    (None when none is), and why each step before it was skipped. A checkpoint saved under
    other settings than `cfg`'s is intact, but Orbax would fail to read it into `fresh`'s
    shapes (with many lines of tracebacks from its threads): InputError."""
    skipped = {}
    for step in steps:
        folder = step_folder(mgr, step)
        why = why_damaged(folder)
        if why is None:
            differ = saved_under_other_settings(folder, cfg, fresh.order.shape[-1])
            if differ:
                raise InputError(
                    f"--workdir {path!r}: the settings do not match the saved shapes of "
                    f"checkpoint {step}, saved under {', '.join(differ)}; give the settings it "
                    "was trained under (config.json may have been overwritten)"
                )
            try:
                return step, _restore_step(mgr, step, fresh), skipped
            except Exception as e:  # Orbax: any reader error
                why = f"unreadable ({type(e).__name__})"
        skipped[step] = why
    return None, None, skipped


def delete(mgr: ocp.CheckpointManager, steps: list[int]) -> None:
    """Delete the checkpoints of `steps` and make the manager forget them."""
    for step in steps:
        shutil.rmtree(step_folder(mgr, step))
    if steps:
        mgr.reload()


def killed_before_sealing(mgr: ocp.CheckpointManager, steps: list[int]) -> bool:
    """Whether `steps` is one checkpoint without a digest: what a run killed between saving and
    sealing its only checkpoint leaves (the first, or any with --keep_checkpoints=1)."""
    return len(steps) == 1 and not os.path.exists(
        os.path.join(step_folder(mgr, steps[0]), DIGEST_FILE)
    )


def restore(
    mgr: ocp.CheckpointManager,
    fresh: train.Replica,
    cfg: Config,
    path: str,
    which: str = "latest",
    owner: bool = False,
) -> tuple[train.Replica, train.Progress] | None:
    """Restore the latest (or best) checkpoint of `cfg`'s run, shaped like `fresh`; fall back to
    earlier ones, with one warning, when it is damaged; None when there is none. The `owner` of
    the folder (a run training into it) deletes the damaged checkpoints, half-deleted ones
    included, and trains from step 0 when its only checkpoint was never sealed."""
    steps = sorted(mgr.all_steps(), reverse=True)
    if which == "best" and mgr.best_step() is not None:
        steps = [mgr.best_step()] + [s for s in steps if s != mgr.best_step()]
    step, restored, skipped = _first_usable(mgr, steps, fresh, cfg, path)
    if step is None and owner and killed_before_sealing(mgr, steps):
        delete(mgr, steps)
        warnings.warn(
            f"{path}: checkpoint {steps[0]}, the only one, has no digest (the run was killed "
            "while saving it); deleted, training from step 0",
            stacklevel=2,
        )
        return None
    if step is None and steps:
        fresh_start = "; delete the folder to train from scratch" if owner else ""
        reasons = ", ".join(f"{s}: {why}" for s, why in skipped.items())
        raise InputError(
            f"--workdir {path!r} has no usable checkpoint: all {len(steps)} damaged ({reasons})"
            + fresh_start
        )
    if skipped:
        reasons = "; ".join(f"checkpoint {s} cannot be read: {why}" for s, why in skipped.items())
        warnings.warn(
            f"{path}: {reasons}; using checkpoint {step}"
            + (", the others deleted" if owner else ""),
            stacklevel=2,
        )
    if owner:
        older = [s for s in steps if s < step and why_damaged(step_folder(mgr, s))]
        delete(mgr, [*skipped, *older])  # older: half deleted by a killed run, never read
    return restored


@dataclasses.dataclass
class Saved:
    """A trained model read back from a work folder."""

    cfg: Config
    replicas: train.Replica
    progress: train.Progress
    seeds: list[int]
    settings: dict = dataclasses.field(default_factory=dict)  # config.json: `check_data` reads it


def read_config(path: str) -> dict:
    """Return the config.json of the work folder `path`, checked to hold a run's settings."""
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise InputError(f"--workdir {path!r} holds no run ({CONFIG_FILE} is missing)")
    try:
        with open(config_path, encoding="utf-8") as f:
            settings = json.load(f)
        config.from_dict(settings["config"])
        if not isinstance(settings["train_images"], int):
            raise TypeError("train_images is not a whole number")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(
            f"{config_path} is damaged ({type(e).__name__}: {e}); it should hold the run's "
            "settings as written by experiments.mlp"
        ) from None
    return settings


def as_which(text: str | int) -> str | int | None:
    """Return the checkpoint `text` names: latest, best or a step number (an int); None when it
    names none."""
    if isinstance(text, int) or text in WHICH:
        return text
    return int(text) if re.fullmatch("[0-9]+", text) else None


def restore_step(
    mgr: ocp.CheckpointManager, step: int, fresh: train.Replica, cfg: Config, path: str
) -> tuple[train.Replica, train.Progress]:
    """Restore checkpoint `step` of `cfg`'s run, shaped like `fresh`; InputError naming the
    steps kept when it is not kept or not intact: no other step stands in for one named."""
    kept = sorted(mgr.all_steps())
    if step not in kept:
        raise InputError(
            f"--workdir {path!r} has no checkpoint at step {step}; accepted: a step it keeps "
            f"({', '.join(map(str, kept)) or 'none'}), latest or best"
        )
    _, restored, skipped = _first_usable(mgr, [step], fresh, cfg, path)
    if restored is None:
        others = ", ".join(str(s) for s in kept if s != step) or "none"
        raise InputError(
            f"--workdir {path!r}: checkpoint {step} cannot be read: {skipped[step]}; accepted: "
            f"another step ({others}), latest or best"
        )
    return restored


def load(path: str, which: str | int = "latest") -> Saved:
    """Read the latest or best checkpoint of the work folder `path`, or that of step `which`
    (an int), without any data."""
    if as_which(which) is None:
        raise InputError(f"unknown --checkpoint {which!r}; accepted: {WHICH_ACCEPTED}")
    which = as_which(which)
    settings = read_config(path)
    cfg = config.from_dict(settings["config"])
    mgr = manager(path)  # read-only mode would log two warnings; loading saves nothing
    try:
        fresh = abstract_replicas(cfg, settings["train_images"])
        if isinstance(which, int):
            restored = restore_step(mgr, which, fresh, cfg, path)
        else:
            restored = restore(mgr, fresh, cfg, path, which)
    finally:
        mgr.close()
    if restored is None:
        raise InputError(f"--workdir {path!r} has no checkpoint yet")
    return Saved(cfg, restored[0], restored[1], train.replica_seeds(cfg), settings)


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
