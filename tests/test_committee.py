"""Committees of saved models: work folders of any architecture and preprocessing voting by
their averaged softmax (mlp_jax/uses/evaluation.py), their record and table, and
experiments.evaluate and experiments.predict given several --workdir."""

import dataclasses
import json
import os
import re
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw
import pytest

from mlp_jax.campaign import tables
from mlp_jax.core import augment, data, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.store import checkpoints, runner
from mlp_jax.uses import evaluation
from tests.helpers import release_digest, run_modules, save_diverged
from tests.test_data import write_folder

WIDE = Config(hidden=(16,), act="relu", batch_size=10, steps=20, eval_every=20, num_seeds=2)
DEEP = Config(hidden=(8, 8), act="tanh", batch_size=10, steps=20, eval_every=20, seed=3)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny) -> list[str]:
    """Two work folders of different architectures trained on `tiny`: two replicas, then one."""
    root = tmp_path_factory.mktemp("committee")
    for name, cfg in (("wide", WIDE), ("deep", DEEP)):
        runner.train_and_record(cfg, tiny, str(root / "r.jsonl"), str(root / name))
    return [str(root / "wide"), str(root / "deep")]


def by_hand(path: str, x: jax.Array, which: str | int = "latest") -> list[np.ndarray]:
    """Return the softmax of each replica saved in `path` (its `which` checkpoint) on the flat
    images `x`."""
    saved = checkpoints.load(path, which)
    model = train.make_model(saved.cfg)
    softmax = []
    for r in range(saved.cfg.num_seeds):
        variables = jax.tree.map(lambda p, r=r: p[r], saved.replicas.params)
        softmax.append(np.asarray(jax.nn.softmax(model.apply(variables, x))))
    return softmax


def test_a_committee_of_two_architectures_averages_their_softmax(folders, tiny):
    committee = evaluation.vote(
        evaluation.measure_all(evaluation.sources(folders, "latest"), lambda cfg: tiny), "equal"
    )
    every = [p for path in folders for p in by_hand(path, tiny.test_x)]
    assert len(every) == 3 and not np.allclose(every[0], every[2])
    np.testing.assert_allclose(committee.test_probs, np.mean(every, axis=0), rtol=1e-5, atol=1e-7)
    record = evaluation.record(committee, "latest", "python -m experiments.evaluate")
    right = np.argmax(np.mean(every, axis=0), axis=-1) == np.asarray(tiny.test_y)
    assert record["test_correct"] == right.sum() and record["test_accuracy"] == right.mean()
    assert [(m["folder"], m["step"], m["seed"], m["name"]) for m in record["members"]] == [
        (folders[0], 20, 0, "mlp-16-relu"),
        (folders[0], 20, 1, "mlp-16-relu"),
        (folders[1], 20, 3, "mlp-8x8-tanh"),
    ]
    assert (record["entered"], record["left_out"], record["diverged"]) == (3, 0, 0)
    assert [m["weight"] for m in record["members"]] == pytest.approx([1 / 3] * 3)
    json.dumps(record, allow_nan=False)  # one JSON line for results.append
    table = tables.committee_markdown(record, ["Command: `x`"])
    assert "| **committee** | | 3 of 3 replicas from 2 folders | | equal |" in table
    assert f"seed {record['best_member']['seed']}), the committee gets " in table


def test_predict_with_two_work_folders_averages_both(folders, tiny):
    saved = [checkpoints.load(path) for path in folders]
    digits = np.asarray(tiny.test_x).reshape(-1, 28, 28)
    probs, entered = evaluation.committee(folders, saved, digits)
    every = [p for path in folders for p in by_hand(path, tiny.test_x)]
    np.testing.assert_allclose(probs, np.mean(every, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(entered, [True, True, True])
    assert evaluation.label(3, 3, folders) == "committee of 3 finished replicas from 2 folders"


def test_predict_weighs_the_members_as_evaluate_does(folders, tiny):
    def load(cfg):
        return tiny

    sources = evaluation.sources(folders, "latest")
    saved, weights = evaluation.voters(sources, "validation", load)
    voted = evaluation.vote(evaluation.measure_all(sources, load), "validation")
    np.testing.assert_array_equal(weights, voted.weights)
    assert not np.allclose(weights, 1 / 3)  # else equal weights would pass too
    digits = np.asarray(tiny.test_x).reshape(-1, 28, 28)
    probs, _ = evaluation.committee(folders, saved, digits, weights)
    every = [p for path in folders for p in by_hand(path, tiny.test_x)]
    np.testing.assert_allclose(probs, np.tensordot(weights, every, axes=1), rtol=1e-5, atol=1e-6)
    assert evaluation.voters(sources, "equal", load)[1] is None  # reads no data


def test_a_diverged_member_is_left_out_and_counted(folders, tiny, tmp_path):
    broken = save_diverged(tmp_path / "broken", dataclasses.replace(WIDE, seed=7), [None, 9], tiny)
    paths = [folders[1], broken]
    measured = evaluation.measure_all(evaluation.sources(paths, "latest"), lambda cfg: tiny)
    committee = evaluation.vote(measured, "equal")
    np.testing.assert_array_equal(committee.entered, [True, True, False])
    kept = [by_hand(folders[1], tiny.test_x)[0], by_hand(broken, tiny.test_x)[0]]
    np.testing.assert_allclose(committee.test_probs, np.mean(kept, axis=0), rtol=1e-5, atol=1e-7)
    record = evaluation.record(committee, "latest", "test")
    assert (record["entered"], record["left_out"], record["diverged"]) == (2, 1, 1)
    assert record["members"][2]["weight"] == 0 and record["members"][2]["test_accuracy"] is not None
    assert (
        evaluation.label(2, 3, paths)
        == "committee of 2 finished replicas from 2 folders (1 of 3 left out)"
    )
    table = tables.committee_markdown(record, [])
    assert "| mlp-16-relu (diverged at step 9, left out) |" in table
    assert "1 replica left out (1 diverged)" in table


def test_a_committee_refuses_folders_measured_on_other_labels(folders, tiny):
    other = tiny.replace(test_y=(tiny.test_y + 1) % 10)
    measured = evaluation.measure_all(
        evaluation.sources(folders, "latest"), lambda cfg: tiny if cfg.num_seeds == 2 else other
    )
    with pytest.raises(InputError) as refused:
        evaluation.vote(measured, "equal")
    assert str(refused.value) == (
        f"--workdir {folders[1]!r} was measured on other test labels than --workdir "
        f"{folders[0]!r}; accepted: work folders trained on the same data (give --data_dir)"
    )


def test_evaluating_or_voting_on_other_data_is_refused_naming_both(tmp_path, tiny):
    """An MNIST folder measured on Fashion-MNIST's files, and a committee of an MNIST and a
    Fashion-MNIST folder (evaluated or predicting): refused, before any checkpoint is read."""
    mnist, fashion = (tiny.replace(digest=release_digest(r)) for r in ("mnist", "fashion_mnist"))
    out, a, b = (str(tmp_path / name) for name in ("r.jsonl", "a", "b"))
    runner.train_and_record(WIDE, mnist, out, a)
    runner.train_and_record(DEEP, fashion, out, b)
    trained = r"train-images-idx3-ubyte md5 6bbc9ace898e44ae57da46a324031adb \(mnist's\)"
    with pytest.raises(InputError) as refused:
        evaluation.measure_all(evaluation.sources([a], "latest"), lambda cfg: fashion)
    assert re.match(
        rf"--workdir {re.escape(repr(a))} was trained on other data: {trained} in the run, "
        r"[0-9a-f]{32} \(fashion_mnist's\) here; accepted: the data it was trained on",
        str(refused.value),
    )
    for fields in (evaluation.SAME_SPLITS, evaluation.SAME_CLASSES):
        with pytest.raises(InputError) as refused:
            evaluation.read(evaluation.sources([a, b], "latest"), fields)
        assert re.match(
            rf"--workdir {re.escape(repr(b))} was trained on other data than --workdir "
            rf"{re.escape(repr(a))}: train-images-idx3-ubyte md5 [0-9a-f]{{32}} "
            r"\(fashion_mnist's\) in the run, 6bbc9ace898e44ae57da46a324031adb \(mnist's\) "
            "there; accepted: work folders trained on the same data",
            str(refused.value),
        )
    measured = evaluation.measure_all(evaluation.sources([a], "latest"), lambda cfg: mnist)
    assert measured[0].saved.progress.step == 20


@pytest.mark.parametrize("again", ["same", "slash", "symlink", "latest", "step"])
def test_a_committee_counts_each_checkpoint_once(folders, tiny, tmp_path, again):
    first = folders[0]
    twice = {
        "same": first,
        "slash": first + "/",
        "symlink": str(tmp_path / "link"),
        "latest": first + "@latest",
        "step": first + "@20",  # its latest
    }[again]
    if again == "symlink":
        os.symlink(first, twice)
    sources = evaluation.sources([first, folders[1], twice], "latest")
    expected = (
        f"--workdir {twice!r} names checkpoint 20 of --workdir {first!r} again; accepted: each "
        "checkpoint once (another one of a folder: --workdir=FOLDER@STEP), so that each replica "
        "votes once"
    )
    with pytest.raises(InputError) as refused:  # experiments.predict
        evaluation.read(sources, evaluation.SAME_CLASSES)
    assert str(refused.value) == expected
    with pytest.raises(InputError) as refused:  # experiments.evaluate
        evaluation.measure_all(sources, lambda cfg: tiny)
    assert str(refused.value) == expected


def save_unfinished(path: str, cfg: Config, dataset) -> str:
    """Train `cfg` into the work folder `path` and stop it at its first evaluation."""
    with runner.work_folder(path, cfg, "test", dataset) as folder:
        runner.fit_in(cfg, dataset, folder, on_eval=lambda evaluation: True)
    return path


def test_an_unfinished_work_folder_votes_with_a_one_line_warning(folders, tiny, tmp_path):
    path = save_unfinished(str(tmp_path / "unfinished"), dataclasses.replace(DEEP, steps=40), tiny)
    for which in checkpoints.WHICH:
        with pytest.warns(UserWarning) as warned:
            saved = evaluation.read(
                evaluation.sources([folders[0], path], which), evaluation.SAME_SPLITS
            )
        assert [str(w.message) for w in warned] == [
            f"--workdir {path!r} is unfinished: its training reached step 20 of 40; its "
            "replicas vote as they are"
        ]
        assert [s.progress.step for s in saved] == [20, 20]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluation.read(evaluation.sources(folders, "latest"), evaluation.SAME_SPLITS)


def nll(weights: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> float:
    """Return the weighted committee's mean negative log-likelihood of `labels`."""
    mixed = np.tensordot(weights, probs, axes=1)[np.arange(len(labels)), labels]
    return float(-np.log(mixed).mean())


def test_committee_weights_never_read_the_test_split(folders, tiny):
    rng = np.random.default_rng(5)
    garbage = tiny.replace(
        test_x=jnp.asarray(rng.uniform(size=tiny.test_x.shape), jnp.float32),
        test_y=jnp.asarray(rng.integers(0, 10, tiny.test_y.shape), jnp.int32),
    )
    measured = {
        name: evaluation.measure_all(
            evaluation.sources(folders, "latest"), lambda cfg, d=dataset: d
        )
        for name, dataset in (("real", tiny), ("garbage", garbage))
    }
    chosen = {}
    for rule in evaluation.WEIGHTS:
        for name, folder_list in measured.items():
            chosen[rule, name] = evaluation.vote(folder_list, rule).weights
        np.testing.assert_array_equal(chosen[rule, "real"], chosen[rule, "garbage"])
    weights = chosen["validation", "real"]
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1)
    probs = np.concatenate([f.val_probs for f in measured["real"]]).astype(np.float64)
    labels = np.asarray(tiny.val_y)
    assert nll(weights, probs, labels) <= nll(np.full(3, 1 / 3), probs, labels) + 1e-9
    assert nll(weights, probs, labels) < nll(np.eye(3)[np.argmin(weights)], probs, labels)
    accurate = evaluation.scores(evaluation.vote(measured["real"], "accuracy"))
    assert accurate["val_correct"] >= max(c for f in measured["real"] for c in f.val_correct)


def test_a_committee_refuses_work_folders_of_other_splits(tmp_path):
    paths = {}
    for name, cfg in (
        ("a", WIDE),
        ("b", dataclasses.replace(WIDE, validation_size=20)),
        ("c", dataclasses.replace(WIDE, dataset="fashion_mnist")),
    ):
        paths[name] = str(tmp_path / name)
        settings = checkpoints.Settings(paths[name], cfg, "test", {}, ())
        settings.write(40)  # config.json, no checkpoint
        settings.close()
    # Refused from the settings alone, before any checkpoint is read (there is none).
    with pytest.raises(InputError) as refused:
        evaluation.read(
            evaluation.sources([paths["a"], paths["b"]], "latest"), evaluation.SAME_SPLITS
        )
    assert str(refused.value) == (
        f"--workdir {paths['b']!r} has validation_size 20, --workdir {paths['a']!r} has 5000; "
        "accepted: work folders of one dataset and one validation_size, so that their replicas "
        "vote on the same digits"
    )
    with pytest.raises(InputError, match=r"has dataset 'fashion_mnist', --workdir .* has 'mnist'"):
        evaluation.read(
            evaluation.sources([paths["a"], paths["c"]], "latest"), evaluation.SAME_CLASSES
        )
    with pytest.raises(InputError, match="has no checkpoint yet"):  # predict: any validation size
        evaluation.read(
            evaluation.sources([paths["a"], paths["b"]], "latest"), evaluation.SAME_CLASSES
        )


@pytest.mark.slow
def test_evaluate_and_predict_take_several_work_folders(tmp_path):
    data_dir = write_folder(tmp_path / "data", n_train=60, n_test=20)
    common = ["--steps=20", "--eval_every=20", "--batch_size=10", "--validation_size=10"]
    common += [f"--data_dir={data_dir}", f"--out={tmp_path / 'runs.jsonl'}"]
    a, b, out, table = (str(tmp_path / name) for name in ("a", "b", "c.jsonl", "c.md"))
    trained = run_modules(
        [
            "experiments.mlp",
            "--hidden=16",
            "--act=relu",
            "--num_seeds=2",
            "--keep_every=10",
            f"--workdir={a}",
            *common,
        ],
        ["experiments.mlp", "--hidden=8,8", "--act=tanh", f"--workdir={b}", *common],
    )
    assert [p.returncode for p in trained] == [0, 0], trained
    image = tmp_path / "one.png"
    picture = Image.new("L", (60, 80), 255)
    ImageDraw.Draw(picture).line([(30, 10), (30, 70)], fill=0, width=6)
    picture.save(image)
    unfinished = save_unfinished(
        str(tmp_path / "unfinished"),
        Config(hidden=(8,), steps=40, eval_every=20, batch_size=10, validation_size=10),
        data.load("mnist", data_dir, 10),
    )
    evaluate, predict, twice, again, late, snapshots, shifted, missing = run_modules(
        [
            "experiments.evaluate",
            f"--workdir={a}",
            f"--workdir={b}",
            "--weights=validation",
            f"--data_dir={data_dir}",
            f"--out={out}",
            f"--table={table}",
        ],
        [
            "experiments.predict",
            f"--workdir={a}",
            f"--workdir={b}",
            "--weights=validation",
            f"--data_dir={data_dir}",
            str(image),
        ],
        ["experiments.evaluate", f"--workdir={a}", f"--workdir={a}/", f"--data_dir={data_dir}"],
        ["experiments.predict", f"--workdir={b}", f"--workdir={b}", str(image)],
        ["experiments.predict", f"--workdir={a}", f"--workdir={unfinished}", str(image)],
        [
            "experiments.evaluate",
            f"--workdir={a}@10",
            f"--workdir={a}",
            f"--workdir={b}",
            "--weights=accuracy",
            "--tta=shifts",
            f"--data_dir={data_dir}",
        ],
        [
            "experiments.predict",
            f"--workdir={a}",
            "--checkpoint=10",
            "--weights=accuracy",
            "--tta=shifts",
            f"--data_dir={data_dir}",
            str(image),
        ],
        ["experiments.predict", f"--workdir={a}@7", str(image)],
    )
    for proc, path in ((twice, f"{a}/"), (again, b)):
        assert proc.returncode == 2 and not proc.stdout, proc.stderr
        assert proc.stderr.splitlines() == [
            f"error: --workdir {path!r} names checkpoint 20 of --workdir {path.rstrip('/')!r} "
            "again; accepted: each checkpoint once (another one of a folder: "
            "--workdir=FOLDER@STEP), so that each replica votes once"
        ]
    assert (missing.returncode, missing.stdout) == (2, ""), missing.stderr
    assert missing.stderr.splitlines() == [
        f"error: --workdir {a!r} has no checkpoint at step 7; accepted: a step it keeps (10, 20), "
        "latest or best"
    ]
    assert snapshots.returncode == 0, snapshots.stderr
    assert "mlp-16-relu: checkpoint, step 10 of 20" in snapshots.stdout
    assert re.search(
        r"^committee of 5 finished replicas from 3 checkpoints of 2 folders, tta shifts: "
        r"val_accuracy \S+ \(\d+/10\)  test_accuracy \S+ \(\d+/20\)$",
        snapshots.stdout,
        re.M,
    ), snapshots.stdout
    assert re.search(r"^weights \(accuracy\): ", snapshots.stdout, re.M)
    assert shifted.returncode == 0, shifted.stderr
    assert re.fullmatch(
        r"ensemble of 2 of 2 finished replicas, weights \(accuracy\) \S+ \S+, tta shifts\n",
        shifted.stderr,
    )
    assert late.returncode == 0 and late.stderr.splitlines() == [
        f"warning: --workdir {unfinished!r} is unfinished: its training reached step 20 of 40; "
        "its replicas vote as they are",
        "committee of 3 finished replicas from 2 folders",
    ], late.stderr
    assert evaluate.returncode == 0, evaluate.stderr
    right = re.search(
        r"^committee of 3 finished replicas from 2 folders: val_accuracy \S+ \(\d+/10\)  "
        r"test_accuracy \S+ \((\d+)/20\)$",
        evaluate.stdout,
        re.M,
    ).group(1)
    assert (
        len(
            re.findall(
                r"^seed \d: val_accuracy \S+ \(\d+/10\)  test_accuracy", evaluate.stdout, re.M
            )
        )
        == 3
    )
    (record,) = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert record["test_correct"] == int(right) and record["folders"] == [a, b]
    assert record["weights"] == "validation" and record["command"].startswith(
        "python -m experiments.evaluate --workdir="
    )
    assert (
        "| **committee** | | 3 of 3 replicas from 2 folders | | validation |"
        in (tmp_path / "c.md").read_text()
    )
    assert predict.returncode == 0, predict.stderr
    weights = " ".join(f"{m['weight']:.3f}" for m in record["members"])
    assert predict.stderr.splitlines() == [
        f"committee of 3 finished replicas from 2 folders, weights (validation) {weights}"
    ]
    assert re.fullmatch(
        rf"{image}: (\d \(\d\.\d{{3}}\)  ){{2}}\d \(\d\.\d{{3}}\)\n", predict.stdout
    )


def test_validation_weights_go_to_the_member_that_knows_the_validation_labels():
    labels = np.array([0, 1, 2, 0, 1])
    knows = np.eye(3)[labels] * 0.9 + 0.1 / 3
    guesses = np.full((5, 3), 1 / 3)
    entered = np.array([True, True, False])
    weights = evaluation.validation_weights(np.stack([guesses, knows, knows]), labels, entered)
    assert weights[0] < 1e-3 and weights[1] == pytest.approx(1, abs=1e-3) and weights[2] == 0
    with pytest.raises(InputError, match=r"^--weights=validation needs a validation split"):
        evaluation.validation_weights(np.zeros((3, 0, 3)), np.zeros(0, int), entered)


def test_accuracy_weights_add_the_member_that_most_raises_validation_accuracy(monkeypatch):
    """Greedy selection with replacement: `sure` first (as right as `unsure`, likelier), then
    `fixer`, the one member that gets image 3 right; `perfect` did not enter. Further rounds
    keep every image right."""
    labels = np.array([0, 1, 2, 0])
    sure = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    unsure = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [0.2, 0.6, 0.2]])
    fixer = np.array([[0.3, 0.4, 0.3], [0.4, 0.3, 0.3], [0.3, 0.4, 0.3], [0.98, 0.01, 0.01]])
    perfect = np.eye(3)[labels]
    entered = np.array([True, True, True, False])
    probs = np.stack([sure, unsure, fixer, perfect])
    weights = evaluation.accuracy_weights(probs, labels, entered)
    assert weights[3] == 0 and weights.sum() == pytest.approx(1)
    np.testing.assert_array_equal(np.argmax(np.tensordot(weights, probs, axes=1), -1), labels)
    monkeypatch.setattr(evaluation, "ROUNDS", 2)
    np.testing.assert_array_equal(
        evaluation.accuracy_weights(probs, labels, entered), [0.5, 0, 0.5, 0]
    )
    # The third addition (fixer again) keeps every image right, less likely: round 2 stays.
    monkeypatch.setattr(evaluation, "ROUNDS", 3)
    np.testing.assert_array_equal(
        evaluation.accuracy_weights(probs, labels, entered), [0.5, 0, 0.5, 0]
    )
    with pytest.raises(InputError, match=r"^--weights=accuracy needs a validation split"):
        evaluation.accuracy_weights(np.zeros((4, 0, 3)), np.zeros(0, int), entered)


SNAPSHOTS = Config(
    hidden=(16,),
    act="relu",
    batch_size=10,
    steps=20,
    eval_every=20,
    keep_every=10,
    keep_checkpoints=1,
    schedule="cyclic_cosine",
    cycles=2,
)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory, tiny) -> str:
    """A work folder of a two-cycle run keeping the checkpoint of every 10th step besides its
    latest: the first cycle's end too."""
    path = str(tmp_path_factory.mktemp("snapshots") / "run")
    runner.train_and_record(SNAPSHOTS, tiny, path + ".jsonl", path)
    return path


def test_snapshots_of_one_run_are_members_at_the_steps_they_name(snapshots, tiny):
    kept = os.listdir(os.path.join(snapshots, "checkpoints"))
    assert sorted(int(step) for step in kept if step.isdigit()) == [10, 20]
    sources = evaluation.sources([snapshots, f"{snapshots}@20", f"{snapshots}@best"], "10")
    assert [(s.path, s.which) for s in sources] == [
        (snapshots, 10),
        (snapshots, 20),
        (snapshots, "best"),
    ]
    committee = evaluation.vote(evaluation.measure_all(sources[:2], lambda cfg: tiny), "equal")
    assert [f.saved.progress.step for f in committee.folders] == [10, 20]
    every = [by_hand(snapshots, tiny.test_x, step)[0] for step in (10, 20)]
    assert not np.allclose(*every)
    np.testing.assert_allclose(committee.test_probs, np.mean(every, axis=0), rtol=1e-5, atol=1e-7)
    record = evaluation.record(committee, "10", "test")
    assert [(m["folder"], m["step"]) for m in record["members"]] == [
        (snapshots, 10),
        (snapshots, 20),
    ]
    assert evaluation.label(2, 2, record["folders"]) == (
        "committee of 2 finished replicas from 2 checkpoints of 1 folder"
    )
    table = tables.committee_markdown(record, [])
    assert f"| `{snapshots}@20` | 0 |" in table
    assert "| **committee** | | 2 of 2 replicas from 2 checkpoints of 1 folder | |" in table


def test_a_step_that_is_not_kept_or_not_intact_is_one_line(snapshots, tmp_path):
    with pytest.raises(InputError) as refused:
        checkpoints.load(snapshots, 25)
    assert str(refused.value) == (
        f"--workdir {snapshots!r} has no checkpoint at step 25; accepted: a step it keeps "
        "(10, 20), latest or best"
    )
    for bad in (f"{snapshots}@last", f"{snapshots}@-1"):
        with pytest.raises(InputError) as refused:
            evaluation.sources([bad], "latest")
        assert str(refused.value) == (
            f"--workdir {bad!r} names checkpoint {bad.rsplit('@')[1]!r}; accepted: FOLDER, "
            "FOLDER@latest, FOLDER@best or FOLDER@STEP (a step number)"
        )
    with pytest.raises(InputError, match=r"^unknown --checkpoint 'first'; accepted: latest, best"):
        evaluation.sources([snapshots], "first")
    copy = shutil.copytree(snapshots, tmp_path / "copy")
    os.remove(copy / "checkpoints" / "10" / checkpoints.DIGEST_FILE)
    with pytest.raises(InputError) as refused:  # no other step instead of the one named
        checkpoints.load(str(copy), 10)
    assert str(refused.value) == (
        f"--workdir {str(copy)!r}: checkpoint 10 cannot be read: it has no digest: unfinished or "
        "half deleted; accepted: another step (20), latest or best"
    )
    assert checkpoints.load(str(copy), 20).progress.step == 20


def test_test_time_shifts_are_measured_as_their_probabilities_say(folders, tiny):
    measured = evaluation.measure_all(
        evaluation.sources(folders, "latest"), lambda cfg: tiny, "shifts"
    )
    for folder in measured:
        for split in ("val", "test"):
            labels = np.asarray(getattr(tiny, f"{split}_y"))
            right = np.argmax(getattr(folder, f"{split}_probs"), axis=-1) == labels
            np.testing.assert_array_equal(getattr(folder, f"{split}_correct"), right.sum(axis=1))
    views = augment.TEST_VIEWS["shifts"]
    shifted = jnp.concatenate([augment.shift(tiny.test_x, *view) for view in views])
    every = [
        p.reshape(len(views), *tiny.test_y.shape, -1).mean(axis=0)
        for path in folders
        for p in by_hand(path, shifted)
    ]
    committee = evaluation.vote(measured, "equal")
    np.testing.assert_allclose(committee.test_probs, np.mean(every, axis=0), rtol=1e-5, atol=1e-7)
    record = evaluation.record(committee, "latest", "test")
    right = np.argmax(committee.val_probs, axis=-1) == np.asarray(tiny.val_y)
    assert record["tta"] == "shifts" and record["val_accuracy"] == right.mean()
    assert "| **committee** | | 3 of 3 replicas from 2 folders | | equal, tta shifts |" in (
        tables.committee_markdown(record, [])
    )
