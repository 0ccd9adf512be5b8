"""Saved models measured as training measured them (the same programs, layout and splits), and
committees of saved models: the finished replicas of one or several work folders, of any
architectures and preprocessing, voting by their averaged softmax.

A member is one replica of one checkpoint of a work folder (`FOLDER`: --checkpoint's, latest by
default; `FOLDER@latest`, `FOLDER@best` or `FOLDER@STEP`: that one, a snapshot kept by
--keep_every); the replicas of one checkpoint are its members, so a committee of one folder is
that run's ensemble, and two steps of one run are a snapshot ensemble. A suffix per folder, not a
list of steps beside the folders, keeps each member's checkpoint next to its folder on the
command line; a folder whose own name ends in `@...` is taken whole when it exists. A replica
that diverged, or whose class probabilities are not all finite, is left out and counted.

The weights (WEIGHTS) are chosen from the validation split alone, never the test split: `equal`,
the plain mean as training's ensemble takes it; `validation`, the non-negative weights summing
to 1 that maximise the validation likelihood; `accuracy`, greedy ensemble selection with
replacement (Caruana et al. 2004): from an empty committee, ROUNDS times add the member whose
addition most raises the validation accuracy (of equals, the one making the validation labels
likeliest, then the first), and weigh each member by its share of the additions up to the round
with the best validation accuracy (of equals, the likeliest, then the earliest), so the
committee is at least as right on validation as its best member. Test-time augmentation
(`augment.TEST_VIEWS`: `shifts`, the image and its 1-pixel shifts) averages each member's softmax
over views of every image, on validation as on test, so that it is judged like any other choice.

Members must share the test and validation splits: one dataset, one validation size (each
member's images are preprocessed its own way), and have been trained on the data they are
measured on, by its digest (a folder made before runs kept it is not checked). A checkpoint named
twice is refused (each member counts once); a folder whose training stopped before its last step
votes as it is, with a warning.
"""

from collections.abc import Callable, Sequence
import dataclasses
import datetime
import functools
import os
from typing import NamedTuple
import warnings

import jax
import numpy as np
from scipy import optimize

from mlp_jax.core import augment, config, data, parallel, preprocess, train
from mlp_jax.core.config import Config
from mlp_jax.core.data import Dataset
from mlp_jax.core.errors import InputError
from mlp_jax.store import checkpoints, results

Loader = Callable[[Config], Dataset]  # the splits a config's run used, preprocessed its way
SAME_SPLITS = ("dataset", "validation_size")  # what members measured together share
SAME_CLASSES = ("dataset",)  # what members voting on a user's digits share
TINY = 1e-12  # the least committee probability of a true label that the likelihood counts
ROUNDS = 50  # additions of greedy selection (`accuracy_weights`): weights in fiftieths
SOURCE_FORMAT = "FOLDER, FOLDER@latest, FOLDER@best or FOLDER@STEP (a step number)"


class Source(NamedTuple):
    """A --workdir of a committee: a work folder and which of its checkpoints votes."""

    path: str
    which: str | int  # latest, best or a step (`checkpoints.as_which`)
    given: str  # the --workdir value, as typed


def sources(workdirs: Sequence[str], checkpoint: str) -> list[Source]:
    """Return the checkpoints that the --workdir values name: `FOLDER@WHICH` that one, a bare
    `FOLDER` (or an existing folder named with an `@`) the --checkpoint `checkpoint`."""
    default = checkpoints.as_which(checkpoint)
    if default is None:
        raise InputError(
            f"unknown --checkpoint {checkpoint!r}; accepted: {checkpoints.WHICH_ACCEPTED}"
        )
    named = []
    for workdir in workdirs:
        path, at, which = workdir.rpartition("@")
        if not at or os.path.isdir(workdir):
            named.append(Source(workdir, default, workdir))
        elif checkpoints.as_which(which) is None:
            raise InputError(
                f"--workdir {workdir!r} names checkpoint {which!r}; accepted: {SOURCE_FORMAT}"
            )
        else:
            named.append(Source(path, checkpoints.as_which(which), workdir))
    return named


def check_alike(configs: Sequence[tuple[str, Config]], fields: Sequence[str]) -> None:
    """Raise InputError unless every work folder's config has the first one's `fields`."""
    first_path, first = configs[0]
    for path, cfg in configs[1:]:
        for field in fields:
            if getattr(cfg, field) != getattr(first, field):
                raise InputError(
                    f"--workdir {path!r} has {field} {getattr(cfg, field)!r}, --workdir "
                    f"{first_path!r} has {getattr(first, field)!r}; accepted: work folders of one "
                    f"{' and one '.join(fields)}, so that their replicas vote on the same digits"
                )


def check_same_data(folders: Sequence[tuple[str, dict]]) -> None:
    """Raise InputError naming both unless every work folder's run was trained on the data of
    the first that kept its data's digest (`checkpoints.run_settings`)."""
    kept = [(path, s["data_digest"]) for path, s in folders if "data_digest" in s]
    for path, digest in kept[1:]:
        if digest != kept[0][1]:
            raise InputError(
                f"--workdir {path!r} was trained on other data than --workdir {kept[0][0]!r}: "
                f"{checkpoints.data_difference(digest, kept[0][1], 'there')}; accepted: work "
                "folders trained on the same data"
            )


def check_distinct(named: Sequence[Source], saved: Sequence[checkpoints.Saved]) -> None:
    """Raise InputError when two --workdir values name one checkpoint of one work folder (`A`,
    `A/`, a link to A, `A@latest`, `A@STEP` of its latest step): a committee counts each member
    once."""
    seen: dict[tuple[str, int], str] = {}
    for source, run in zip(named, saved, strict=True):
        checkpoint = (os.path.realpath(source.path), run.progress.step)
        if checkpoint in seen:
            raise InputError(
                f"--workdir {source.given!r} names checkpoint {run.progress.step} of --workdir "
                f"{seen[checkpoint]!r} again; accepted: each checkpoint once (another one of a "
                "folder: --workdir=FOLDER@STEP), so that each replica votes once"
            )
        seen[checkpoint] = source.given


def warn_unfinished(path: str, saved: checkpoints.Saved) -> None:
    """Warn, in one line, when the training of the run saved in `path` stopped before its last
    step (killed, or still running) with a replica still training."""
    total = saved.cfg.total_steps(saved.replicas.order.shape[-1])
    mgr = checkpoints.manager(path)
    try:
        reached = mgr.latest_step()  # not the best checkpoint's step
    finally:
        mgr.close()
    if reached < total and None in saved.progress.diverged_at_step:
        warnings.warn(
            f"--workdir {path!r} is unfinished: its training reached step {reached} of {total}; "
            "its replicas vote as they are",
            stacklevel=3,
        )


def read(named: Sequence[Source], fields: Sequence[str]) -> list[checkpoints.Saved]:
    """Read the checkpoint each source names, first refusing folders whose configs differ in
    `fields` and folders trained on other data, then a checkpoint named twice; warn of each
    unfinished folder."""
    paths = [source.path for source in named]
    settings = [checkpoints.read_config(path) for path in paths]
    configs = [config.from_dict(s["config"]) for s in settings]
    check_alike(list(zip(paths, configs, strict=True)), fields)
    check_same_data(list(zip(paths, settings, strict=True)))
    saved = [checkpoints.load(source.path, source.which) for source in named]
    check_distinct(named, saved)
    for path, run in zip(paths, saved, strict=True):
        warn_unfinished(path, run)
    return saved


def loader(data_dir: str | None) -> Loader:
    """Return a function loading the splits of a config's run from `data_dir` (None: the run's
    own folder), preprocessed its way; each (dataset, validation size, preprocessing, folder)
    is loaded once."""

    @functools.cache
    def load(dataset: str, validation_size: int, preprocessing: str, folder: str | None):
        return data.load(dataset, folder, validation_size, preprocessing)

    return lambda cfg: load(
        cfg.dataset, cfg.validation_size, cfg.preprocess, data_dir or cfg.data_dir
    )


def folder_data(path: str, saved: checkpoints.Saved, load: Loader) -> Dataset:
    """Load the splits of the run saved in `path`; InputError unless they are the data it was
    trained on (`checkpoints.check_data`) and its training split is the run's."""
    dataset = load(saved.cfg)
    checkpoints.check_data(path, saved.settings, dataset.digest)
    trained_on = saved.replicas.order.shape[-1]
    if dataset.train_x.shape[0] != trained_on:
        raise InputError(
            f"--workdir {path!r}: the data has {dataset.train_x.shape[0]} training images, the "
            f"run {trained_on}; give the run's --data_dir"
        )
    return dataset


@dataclasses.dataclass(frozen=True)
class Folder:
    """One work folder measured: its run, its data (preprocessed its way) and, per replica, the
    right answers and class probabilities on validation and test (under test-time augmentation
    `tta`), and whether it finished."""

    path: str
    which: str | int  # the checkpoint asked for: latest, best or a step
    tta: str  # a name in augment.TEST_VIEWS
    saved: checkpoints.Saved
    data: Dataset
    val_correct: np.ndarray  # (replicas,)
    test_correct: np.ndarray  # (replicas,)
    val_probs: np.ndarray  # (replicas, validation images, classes)
    test_probs: np.ndarray  # (replicas, test images, classes)
    finished: np.ndarray  # (replicas,) bool: may enter a committee


def measure(source: Source, saved: checkpoints.Saved, dataset: Dataset, tta: str) -> Folder:
    """Measure every replica of the checkpoint `source` names on `dataset` with `train.fit`'s
    programs on its layout of replicas and data, so that the accuracies equal the recorded ones;
    under test-time augmentation `tta`, as the averaged softmax of its views classifies."""
    cfg = saved.cfg
    where = parallel.placement(cfg, parallel.select_devices(cfg.devices))
    replicas = jax.device_put(saved.replicas, where.replicas)
    placed = jax.device_put(dataset, where.whole)
    views = augment.TEST_VIEWS[tta]
    probs = [
        np.asarray(train.probabilities(cfg, replicas, x, views))
        for x in (placed.val_x, placed.test_x)
    ]
    if tta == "none":
        correct = [np.asarray(c) for c in train.evaluator(cfg, where)(replicas, placed)]
    else:
        labels = (dataset.val_y, dataset.test_y)
        correct = [right(p, y).sum(axis=-1) for p, y in zip(probs, labels, strict=True)]
    finished = train.finished(saved.progress.diverged_at_step, np.concatenate(probs, axis=1))
    return Folder(source.path, source.which, tta, saved, dataset, *correct, *probs, finished)


def equal_weights(val_probs: np.ndarray, val_y: np.ndarray, entered: np.ndarray) -> np.ndarray:
    """Return 1/K for each of the K entered replicas, 0 for the others."""
    del val_probs, val_y
    return entered / entered.sum()


def check_validation(val_y: np.ndarray, rule: str) -> None:
    """Raise InputError when there is no validation split to choose weights by `rule` on."""
    if not len(val_y):
        raise InputError(
            f"--weights={rule} needs a validation split, and the runs have --validation_size "
            "0; accepted: --weights=equal, or runs with a validation split"
        )


def validation_weights(val_probs: np.ndarray, val_y: np.ndarray, entered: np.ndarray) -> np.ndarray:
    """Return the non-negative weights of the entered replicas, summing to 1, that minimise the
    committee's negative log-likelihood of the validation labels (SLSQP from equal weights)."""
    check_validation(val_y, "validation")
    chosen = np.flatnonzero(entered)
    truth = np.asarray(val_probs, np.float64)[chosen][:, np.arange(len(val_y)), val_y]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        mixed = np.maximum(w @ truth, TINY)
        return -np.log(mixed).mean(), -(truth / mixed).mean(axis=1)

    found = optimize.minimize(
        loss,
        np.full(len(chosen), 1 / len(chosen)),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * len(chosen),
        constraints={"type": "eq", "fun": lambda w: w.sum() - 1, "jac": np.ones_like},
    )
    weights = np.zeros(len(entered))
    weights[chosen] = np.clip(found.x, 0.0, None) / np.clip(found.x, 0.0, None).sum()
    return weights


def accuracy_weights(val_probs: np.ndarray, val_y: np.ndarray, entered: np.ndarray) -> np.ndarray:
    """Return the weights of greedy ensemble selection with replacement on the validation split
    (Caruana et al. 2004), as the module docstring tells."""
    check_validation(val_y, "accuracy")
    chosen = np.flatnonzero(entered)
    probs = np.asarray(val_probs, np.float64)[chosen]
    images = np.arange(len(val_y))
    counts, total = np.zeros(len(chosen)), np.zeros(probs.shape[1:])
    best, best_score = counts, (-1, -np.inf)
    for additions in range(1, ROUNDS + 1):
        trials = total + probs  # the committee with each member added
        correct = (np.argmax(trials, axis=-1) == val_y).sum(axis=-1)
        likelihood = np.log(np.maximum(trials[:, images, val_y] / additions, TINY)).sum(axis=-1)
        pick = np.lexsort((-likelihood, -correct))[0]
        counts, total = counts + np.eye(len(chosen))[pick], trials[pick]
        if (correct[pick], likelihood[pick]) > best_score:
            best, best_score = counts, (correct[pick], likelihood[pick])
    weights = np.zeros(len(entered))
    weights[chosen] = best / best.sum()
    return weights


# How a committee weighs its members, from their validation outputs alone: (class probabilities
# (replicas, images, classes), labels, which replicas entered) -> one weight per replica.
WEIGHTS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "equal": equal_weights,
    "validation": validation_weights,
    "accuracy": accuracy_weights,
}


def label(entered: int, replicas: int, folders: Sequence[str]) -> str:
    """Return how a printout names a committee of the checkpoints of `folders` (a folder once
    per checkpoint): one checkpoint's is its run's ensemble."""
    if len(folders) == 1:
        return train.ensemble_label(entered, replicas)
    left_out = f" ({replicas - entered} of {replicas} left out)" if entered < replicas else ""
    sources = results.committee_sources(folders)
    return f"committee of {entered} finished replicas from {sources}{left_out}"


def check_entered(entered: np.ndarray, paths: Sequence[str]) -> None:
    """Raise InputError naming the work folders when none of their replicas finished."""
    if not entered.any():
        raise InputError(
            f"--workdir {', '.join(map(repr, paths))}: every replica diverged ({len(entered)} of "
            f"{len(entered)}); there is no finished model to use"
        )


def committee(
    paths: Sequence[str],
    saved: Sequence[checkpoints.Saved],
    images: np.ndarray,
    weights: np.ndarray | None = None,
    tta: str = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """Return the class probabilities of the digits `images` (N, 28, 28) in [0, 1], each work
    folder's replicas seeing them preprocessed its way (and the views of test-time augmentation
    `tta`), averaged over the finished replicas of every folder (weighted by `weights`, one per
    replica; None: equally), and which those are (a mask, folder after folder); InputError when
    none is."""
    probs, finished, views = [], [], augment.TEST_VIEWS[tta]
    for run in saved:
        x = preprocess.apply(run.cfg.preprocess, images).reshape(len(images), -1)
        probs.append(np.asarray(train.probabilities(run.cfg, run.replicas, x, views)))
        finished.append(train.finished(run.progress.diverged_at_step, probs[-1]))
    entered = np.concatenate(finished)
    check_entered(entered, paths)
    return np.asarray(train.committee(np.concatenate(probs), entered, weights)), entered


@dataclasses.dataclass(frozen=True)
class Committee:
    """Work folders' finished replicas voting by their weighted averaged softmax."""

    folders: list[Folder]
    rule: str  # a name in WEIGHTS
    weights: np.ndarray  # per replica, folder after folder; 0 for those left out
    entered: np.ndarray  # per replica: whether it votes
    val_probs: np.ndarray  # the committee's class probabilities on validation
    test_probs: np.ndarray  # and on test
    best: int  # the entered replica with the most right validation answers (the first of equals)


def stacked(folders: Sequence[Folder], field: str) -> np.ndarray:
    """Return a per-replica field of every folder, folder after folder."""
    return np.concatenate([getattr(f, field) for f in folders])


def check_same_labels(folders: Sequence[Folder]) -> None:
    """Raise InputError unless every folder's validation and test labels are the first's."""
    first = folders[0]
    for folder in folders[1:]:
        for split, called in (("val_y", "validation"), ("test_y", "test")):
            if not np.array_equal(getattr(folder.data, split), getattr(first.data, split)):
                raise InputError(
                    f"--workdir {folder.path!r} was measured on other {called} labels than "
                    f"--workdir {first.path!r}; accepted: work folders trained on the same data "
                    "(give --data_dir)"
                )


def vote(folders: list[Folder], rule: str) -> Committee:
    """Return the committee of the finished replicas of `folders`, weighted as `rule` (WEIGHTS)
    says from the validation split alone; InputError when no replica finished."""
    check_same_labels(folders)
    entered = stacked(folders, "finished")
    check_entered(entered, [f.path for f in folders])
    val_probs = stacked(folders, "val_probs")
    weights = WEIGHTS[rule](val_probs, np.asarray(folders[0].data.val_y), entered)
    # Equal weights take the plain mean, so that one folder's committee is its recorded ensemble.
    mixing = None if rule == "equal" else weights
    probs = [
        np.asarray(train.committee(p, entered, mixing))
        for p in (val_probs, stacked(folders, "test_probs"))
    ]
    best = int(np.argmax(np.where(entered, stacked(folders, "val_correct"), -1)))
    return Committee(folders, rule, weights, entered, *probs, best)


def measure_all(named: Sequence[Source], load: Loader, tta: str = "none") -> list[Folder]:
    """Measure the checkpoint each source names on its folder's own data (`load`), under
    test-time augmentation `tta`, first refusing folders that do not share the test and
    validation splits."""
    saved = read(named, SAME_SPLITS)
    return [
        measure(source, run, folder_data(source.path, run, load), tta)
        for source, run in zip(named, saved, strict=True)
    ]


def voters(
    named: Sequence[Source], rule: str, load: Loader, tta: str = "none"
) -> tuple[list[checkpoints.Saved], np.ndarray | None]:
    """Return the runs saved in the checkpoints `named` and their replicas' weights under `rule`
    (WEIGHTS) and test-time augmentation `tta`, chosen as `vote` chooses them; equal weights
    (None) read no data, so the folders need only share their classes."""
    if rule == "equal":
        return read(named, SAME_CLASSES), None
    chosen = vote(measure_all(named, load, tta), rule)
    return [folder.saved for folder in chosen.folders], chosen.weights


def right(probs: np.ndarray, labels: jax.Array) -> np.ndarray:
    """Return which images the class probabilities `probs` (images, classes) classify right."""
    return np.argmax(probs, axis=-1) == np.asarray(labels)


def scores(c: Committee) -> dict:
    """Return the committee's right answers and accuracy on validation and test, and how many
    test digits it gets right that its best member misses and the reverse."""
    split = c.folders[0].data
    ours = right(c.test_probs, split.test_y)
    theirs = right(stacked(c.folders, "test_probs")[c.best], split.test_y)
    val_correct = int(right(c.val_probs, split.val_y).sum())
    return {
        "val_correct": val_correct,
        "val_total": len(split.val_y),
        "val_accuracy": accuracy(val_correct, len(split.val_y)),
        "test_correct": int(ours.sum()),
        "test_total": len(split.test_y),
        "test_accuracy": accuracy(int(ours.sum()), len(split.test_y)),
        "right_where_best_wrong": int((ours & ~theirs).sum()),
        "wrong_where_best_right": int((theirs & ~ours).sum()),
    }


def accuracy(correct: int, total: int) -> float | None:
    """Return an exact accuracy; None for an empty split."""
    return correct / total if total else None


def members(c: Committee) -> list[dict]:
    """Return each replica of the committee's folders as its record lists it."""
    listed = []
    for f in c.folders:
        val_total, test_total = len(f.data.val_y), len(f.data.test_y)
        for r, seed in enumerate(f.saved.seeds):
            listed.append(
                {
                    "folder": f.path,
                    "step": f.saved.progress.step,
                    "seed": seed,
                    "name": results.default_name(f.saved.cfg),
                    "preprocess": f.saved.cfg.preprocess,
                    "val_accuracy": accuracy(int(f.val_correct[r]), val_total),
                    "test_accuracy": accuracy(int(f.test_correct[r]), test_total),
                    "diverged_at_step": f.saved.progress.diverged_at_step[r],
                }
            )
    for member, weight, entered in zip(listed, c.weights, c.entered, strict=True):
        member.update(entered=bool(entered), weight=float(weight))
    return listed


def record(c: Committee, which: str, command: str) -> dict:
    """Return the committee's record (one JSON line for `results.append`): its members (folder,
    checkpoint step, seed, name, preprocessing, accuracies, weight), how many entered and were
    left out, its test-time augmentation, its own accuracies and how it fares against its best
    member by validation accuracy."""
    cfg = c.folders[0].saved.cfg
    listed = members(c)
    return {
        "kind": "committee",
        "command": command,
        "checkpoint": which,
        "dataset": cfg.dataset,
        "validation_size": cfg.validation_size,
        "weights": c.rule,
        "tta": c.folders[0].tta,
        "folders": [f.path for f in c.folders],
        "members": listed,
        "entered": int(c.entered.sum()),
        "left_out": int((~c.entered).sum()),
        "diverged": sum(m["diverged_at_step"] is not None for m in listed),
        "best_member": {key: listed[c.best][key] for key in ("folder", "seed")},
        "best_by": "validation accuracy",
        **scores(c),
        **results.environment(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
