"""Searches: the space's syntax, trials recorded once with their state and values, pruning,
the test split never read, a study that refuses another space, and bad input in one line."""

import dataclasses
import json
import os

import optuna
import pytest

from experiments import cli
from mlp_jax.campaign import search as searching
from mlp_jax.campaign import space as spaces
from mlp_jax.campaign import tables
from mlp_jax.core.errors import InputError
from tests.helpers import run_modules, write_digits

SPACE = spaces.merge(spaces.Space(()), ["hidden=layers:1:2:8:32", "lr=float:0.05:1:log"])
# Each trial: 40 steps of 20 images, evaluated every 10 steps, on 200 training images.
FLAGS = ("--validation_size=50", "--batch_size=20", "--steps=40", "--eval_every=10")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> str:
    """A learnable stand-in for MNIST: 250 training and 60 test images."""
    return write_digits(tmp_path_factory.mktemp("digits"), 250, 60)


def make_search(out, digits: str, **changes) -> searching.Search:
    """Return a 3-trial search of SPACE on `digits` into `out`."""
    settings = {
        "name": "tiny",
        "space": SPACE,
        "out": str(out),
        "trials": 3,
        "extra": (*FLAGS, f"--data_dir={digits}"),
        **changes,
    }
    return searching.Search(**settings)


def run(search: searching.Search) -> optuna.Study:
    """Run the search in this process, as a worker of experiments.search does."""
    return searching.work(search, cli.config_from_args, "test", printer=lambda line: None)


def test_a_param_reads_back_as_it_is_written():
    for text in (
        "lr=float:0.001:1:log",
        "dropout=float:0:0.5",
        "batch_size=int:32:512:log",
        "act=cat:relu,tanh",
        "hidden=cat:64/64,128",
        "hidden=layers:1:3:64:1024",
        "momentum=float:0.5:0.99@optimizer=momentum|nesterov",
    ):
        assert spaces.parse_param(text).text() == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("lr=float:1:0.1", "bounds 1..0.1 are empty"),
        ("lr=float:0:1:log", r"not positive \(log\)"),
        ("lr=float:a:1", "'a' is not a number"),
        ("lr=gauss:0:1", "malformed --param"),
        ("seed=int:0:9", "not a flag a search can sample"),
        ("steps=int:10:99", "not a flag a search can sample"),
        ("act=cat:relu,relu", "repeats a value"),
        ("act=layers:1:2:8:16", "malformed --param"),
        ("hidden=layers:2:1:8:16", "depths or widths are empty"),
        ("momentum=float:0:1@colour=red", "malformed condition"),
    ],
)
def test_a_bad_param_is_one_line_naming_it(text, message):
    with pytest.raises(InputError, match=message):
        spaces.parse_param(text)


def test_a_conditional_param_is_drawn_only_when_its_condition_holds():
    space = spaces.merge(
        spaces.Space(()),
        ["optimizer=cat:sgd,momentum", "momentum=float:0.5:0.99@optimizer=momentum"],
    )
    drawn = space.sample(optuna.trial.FixedTrial({"optimizer": "sgd"}), {})
    assert drawn == {"optimizer": "sgd"}
    fixed = optuna.trial.FixedTrial({"optimizer": "momentum", "momentum": 0.8})
    assert space.sample(fixed, {}) == {"optimizer": "momentum", "momentum": "0.8"}
    layers = spaces.parse_param("hidden=layers:1:3:8:64")
    trial = optuna.trial.FixedTrial({"hidden_depth": 2, "hidden_width_1": 9, "hidden_width_2": 40})
    assert layers.draw(trial) == "9,40"


def test_param_overrides_the_named_spaces_own_and_a_flag_cannot_be_both():
    space = spaces.merge(SPACE, ["lr=float:0.1:0.2", "dropout=float:0:0.5"])
    assert [p.text() for p in space.params] == [
        "hidden=layers:1:2:8:32",
        "lr=float:0.1:0.2",
        "dropout=float:0:0.5",
    ]
    with pytest.raises(InputError, match="--lr is sampled by the search and also given"):
        spaces.check_extra(space, ["--lr=0.3"])
    with pytest.raises(InputError, match="--param lr is given twice"):
        spaces.merge(SPACE, ["lr=float:0.1:0.2", "lr=float:0.3:0.4"])


@pytest.fixture(scope="module")
def searched(tmp_path_factory, digits) -> tuple[searching.Search, optuna.Study]:
    """A finished 2-trial search of SPACE on `digits`."""
    search = make_search(tmp_path_factory.mktemp("search"), digits, trials=2)
    return search, run(search)


def test_a_tiny_search_records_each_trial_once_and_exports_its_table(searched):
    search, study = searched
    records = searching.trial_records(search)
    assert sorted(r["trial"] for r in records) == [0, 1]
    for record, trial in zip(sorted(records, key=lambda r: r["trial"]), study.trials, strict=True):
        assert record["trial_state"] in searching.STATES
        assert record["params"]["lr"] == repr(trial.params["lr"])
        assert record["config"]["lr"] == trial.params["lr"]
        assert record["name"] == f"trial_{record['trial']:04d}"
    written = searching.export(search, study, "test")
    with open(os.path.join(search.out, "table.md")) as f:
        table = f.read()
    assert "| 0 | " in table and "| 1 | " in table and "2 trials (" in table
    assert {os.path.basename(p) for p in written} >= {"table.csv", "table.tex", "history.png"}


def test_a_finished_search_trains_nothing_more_and_refuses_another_space(searched, digits):
    search, _ = searched
    with open(search.results) as f:
        before = f.read()
    run(search)
    with open(search.results) as f:
        assert f.read() == before
    other_space = spaces.merge(SPACE, ["lr=float:0.1:0.2"])
    with pytest.raises(InputError, match="was started with other space"):
        run(dataclasses.replace(search, space=other_space))
    with pytest.raises(InputError, match="was started with other flags"):
        run(dataclasses.replace(search, extra=(*search.extra, "--act=tanh")))


def test_a_pruned_trial_stops_at_the_evaluation_the_pruner_chose(tmp_path, digits, monkeypatch):
    # Every value is below 1.1: the pruner stops each trial at its second evaluation. The grid
    # sampler draws each of its points once.
    monkeypatch.setitem(
        searching.PRUNERS,
        "threshold",
        lambda search: optuna.pruners.ThresholdPruner(1.1, n_warmup_steps=2),
    )
    grid = spaces.merge(spaces.Space(()), ["act=cat:relu,tanh"])
    search = make_search(tmp_path, digits, space=grid, sampler="grid", pruner="threshold")
    study = run(search)
    records = searching.trial_records(search)
    assert sorted(r["params"]["act"] for r in records) == ["relu", "tanh"]  # 2 points, not 3
    for record, trial in zip(records, study.trials, strict=True):
        assert record["trial_state"] == "pruned" and record["pruned_at_step"] == 20
        assert record["steps"] == 20 and [h["step"] for h in record["history"]] == [10, 20]
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert sorted(trial.intermediate_values) == [1, 2]
    saved = os.listdir(os.path.join(tmp_path, "work", "trial_0000", "checkpoints"))
    assert max(int(step) for step in saved if step.isdigit()) == 20


def test_the_test_split_is_never_read_while_searching(searched, tmp_path):
    clean, _ = searched
    noisy = make_search(tmp_path, write_digits(tmp_path / "noisy", 250, 60, noise_test=True))
    run(dataclasses.replace(noisy, trials=2))

    def outcome(search):
        records = sorted(searching.trial_records(search), key=lambda r: r["trial"])
        return [(r["params"], r["trial_state"], r["val_accuracy"], r["history"]) for r in records]

    assert outcome(clean) == outcome(noisy)
    for record in searching.trial_records(clean):
        assert record["test_accuracy"] is None
        assert all(h["test_accuracy"] is None for h in record["history"])


def test_a_storage_password_is_never_shown():
    url = "postgresql+psycopg2://mlp:s3cret@127.0.0.1:5432/optuna"
    assert searching.redact(url) == "postgresql+psycopg2://mlp:***@127.0.0.1:5432/optuna"
    assert searching.redact("runs/x/search.journal") == "runs/x/search.journal"


def test_bad_searches_end_in_one_line_and_a_search_exports_as_a_grid(searched, digits, tmp_path):
    data = f"--data_dir={digits}"
    jobs = {
        "malformed param": (["tiny", "--param=lr=float:1", f"--out={tmp_path}/a"], 2),
        "unknown sampler": (["tiny", "--sampler=bayes", "--param=lr=float:0.1:1"], 2),
        "unknown pruner": (["tiny", "--pruner=asha", "--param=lr=float:0.1:1"], 2),
        "grid of a float": (
            ["tiny", "--sampler=grid", "--param=lr=float:0.1:1", f"--out={tmp_path}/b", "--", data],
            2,
        ),
        "nothing sampled": (["tiny", f"--out={tmp_path}/c", "--", data], 2),
        "unreachable storage": (
            [
                "tiny",
                "--param=lr=float:0.1:1",
                "--storage=postgresql+psycopg2://mlp:s3cret@127.0.0.1:9/optuna",
                f"--out={tmp_path}/d",
                "--",
                data,
            ],
            3,
        ),
    }
    *ended, exported = run_modules(
        *(["experiments.search", *args] for args, _ in jobs.values()),
        ["experiments.table", f"--results={searched[0].results}"],
    )
    # experiments.table exports a search's records as it does a grid's.
    assert exported.returncode == 0, exported.stderr
    assert "| trial | state |" in exported.stdout and "2 trials (" in exported.stdout
    for (what, (_, code)), proc in zip(jobs.items(), ended, strict=True):
        assert proc.returncode == code, (what, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (what, proc.stderr)
        assert "s3cret" not in proc.stderr + proc.stdout


def test_the_trials_table_counts_states_and_marks_the_best():
    records = [
        {"trial": 0, "trial_state": "complete", "val_accuracy": 0.9, "params": {"lr": "0.1"}},
        {"trial": 1, "trial_state": "pruned", "pruned_at_step": 20, "val_accuracy": 0.5,
         "params": {"lr": "0.3"}, "examples": 400},
        {"trial": 2, "trial_state": "complete", "val_accuracy": 0.95, "params": {"lr": "0.2"}},
    ]  # fmt: skip
    lines = tables.trials(records)
    assert [line["best"] for line in lines] == [False, False, True]
    assert lines[1]["state"] == "pruned at step 20"
    markdown = tables.trials_markdown(lines, [])
    assert "0.9500 ★" in markdown and "3 trials (2 complete, 1 pruned); 400 training" in markdown
    assert json.loads(tables.trials_json(lines, []))["trials"][2]["params"] == {"lr": "0.2"}
