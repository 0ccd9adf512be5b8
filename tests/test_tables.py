"""Grids, dropout at evaluation, tables and figures."""

import csv
import dataclasses
import io
import json
import os
import re

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import cli
from mlp_jax.campaign import grids, plots, tables
from mlp_jax.core import train
from mlp_jax.core.config import Config
from tests.helpers import REPO

REFERENCE = os.path.join(REPO, "..", "shared", "reference", "seed_results.md")


def row_config(row: grids.Row) -> dict:
    return dataclasses.asdict(cli.row_config(row, []))


def test_seed_table_rows_follow_the_original_protocols():
    configs = {row.name: row_config(row) for row in grids.get("seed_table")}
    assert len(configs) == 11
    first = configs["t1_01_softmax"]
    assert (first["hidden"], first["steps"], first["weight_init"], first["bias_init"]) == (
        (),
        1000,
        "zeros",
        "zeros",
    )
    published, corrected = configs["t1_10_dropout_as_published"], configs["t1_10_dropout_corrected"]
    assert (published["lr"], published["dropout"], published["dropout_at_eval"]) == (
        0.03,
        0.67,
        True,
    )
    assert {**published, "dropout_at_eval": False} == corrected
    for name, cfg in configs.items():
        if name != "t1_01_softmax":
            assert (
                cfg["lr"] in (0.5, 0.03)
                and cfg["batch_size"] == 100
                and cfg["weight_init"] == cfg["bias_init"] == "normal"
                and cfg["init_scale"] == 0.01
            ), name


@pytest.mark.skipif(not os.path.exists(REFERENCE), reason="needs ../shared/reference")
def test_published_values_and_architectures_match_the_reference():
    with open(REFERENCE, encoding="utf-8") as f:
        text = f.read()
    table1 = re.findall(
        r"^\| (\d+) \| [^|]+\| ([\d, —]+) \| (\S+) \| ([\d,]+) \| ([\d.]+) \|"
        r"[^|]+\| ([\d.]+) \|$",
        text,
        re.M,
    )
    assert len(table1) == 10
    rows = grids.get("seed_table")
    for number, hidden, act, steps, lr, reported in table1:
        (row, *_) = [r for r in rows if r.name.startswith(f"t1_{int(number):02d}_")]
        cfg = row_config(row)
        assert row.published == float(reported)
        assert cfg["hidden"] == (
            () if hidden.strip() == "—" else tuple(int(h) for h in hidden.split(","))
        )
        assert cfg["steps"] == int(steps.replace(",", "")) and cfg["lr"] == float(lr)
        if cfg["hidden"]:
            assert cfg["act"] == act


def test_course_extras_are_valid_runs():
    for row in grids.get("course_extras"):
        cfg = row_config(row)
        assert cfg["validation_size"] == 0 and cfg["epochs"] > 0 and row.published


@pytest.mark.parametrize("name", list(grids.GRIDS))
def test_every_row_of_every_grid_is_a_valid_run(name):
    rows = grids.get(name)
    assert len({row.name for row in rows}) == len(rows)
    for row in rows:
        cli.row_config(row, [])


def test_best_recipes_keep_a_validation_split_and_augment():
    for name in ("best_cpu", "best_gpu", "committee_cpu", "committee_v2"):
        for row in grids.get(name):
            cfg = cli.row_config(row, [])
            assert cfg.validation_size == 5000 and "elastic" in cfg.augment


def test_dropout_at_eval_is_random_but_repeatable(tiny):
    cfg = Config(hidden=(64,), dropout=0.67, init_scale=0.1)
    model, tx = train.make_model(cfg), train.make_optimizer(cfg, 10)
    rep = train.init_replica(jnp.array(0), tiny, model=model, tx=tx)
    big = tiny.replace(test_x=jnp.tile(tiny.test_x, (50, 1)), test_y=jnp.tile(tiny.test_y, 50))
    clean = train.count_correct(model, rep, big, dropout_at_eval=False)
    noisy = train.count_correct(model, rep, big, dropout_at_eval=True)
    assert train.count_correct(model, rep, big, dropout_at_eval=True) == noisy
    assert noisy[1] != clean[1]


def record(name, seed, accuracy, diverged=False, steps=1000, **config):
    return {
        "name": name,
        "seed": seed,
        "test_accuracy": None if diverged else accuracy,
        "diverged": diverged,
        "steps": steps,
        "n_params": 7850,
        "train_seconds": 4.0,
        "replicas_trained_together": 2,
        "platform": "cpu",
        "device": "cpu",
        "cpus": 2,
        "config": {**json.loads(json.dumps(Config(hidden=(), **config).__dict__))},
    }


RECORDS = [
    record("t1_01_softmax", 0, 0.90),
    record("t1_01_softmax", 1, 0.92),
    record("t1_01_softmax", 2, None, diverged=True),
    record("t1_04_625_441_relu6", 0, 0.5),
    record("t1_04_625_441_relu6", 0, 0.984),
    record("t1_04_625_441_relu6", 1, 0.986),
    record("t1_04_625_441_relu6", 0, 0.8, lr=0.1),
]


def test_table_means_exclude_diverged_and_keep_the_last_record_per_seed():
    lines = tables.build(RECORDS, "seed_table")
    assert [(line["row"], line["n"], line["lr"]) for line in lines] == [
        ("t1_01_softmax", 2, 0.5),
        ("t1_04_625_441_relu6", 2, 0.5),
        ("t1_04_625_441_relu6", 1, 0.1),
    ]
    softmax, two_layer = lines[0], lines[1]
    assert softmax["mean"] == pytest.approx(0.91) and softmax["std"] == pytest.approx(0.01414, 1e-3)
    assert softmax["diverged"] == 1 and softmax["published"] == 0.917
    assert softmax["delta_pp"] == pytest.approx(-0.7) and softmax["train_s_per_run"] == 2.0
    assert two_layer["mean"] == pytest.approx(0.985) and two_layer["delta_pp"] == pytest.approx(0)
    assert softmax["published_in_pi"] and two_layer["published_in_pi"]
    assert lines[2]["pi_low"] is None and lines[2]["published_in_pi"] is None  # one seed
    assert tables.notes(lines) == []


def test_notes_give_rows_outside_the_prediction_interval_and_rows_with_a_note():
    tight = [record("t1_02_900_relu", seed, 0.99 + seed / 10_000) for seed in range(3)]
    noted = [record("t1_09_580_386_192_sigmoid", seed, 0.94 + seed / 100) for seed in range(3)]
    lines = tables.build(tight + noted, "seed_table")
    assert [line["published_in_pi"] for line in lines] == [False, True]
    (row_9,) = [row for row in grids.get("seed_table") if row.name.startswith("t1_09")]
    assert tables.notes(lines) == [
        "t1_02_900_relu: +0.70 pp, published value outside the 95% prediction interval — "
        "no explanation",
        "t1_09_580_386_192_sigmoid: +0.68 pp, published value inside the 95% prediction "
        f"interval — {row_9.note}",
    ]


def test_every_format_renders_the_same_rows():
    lines, header = tables.build(RECORDS, "seed_table"), ["Command: `x`"]
    md = tables.to_markdown(lines, header)
    assert md.startswith("Command: `x`") and "| t1_01_softmax | 784-10 |" in md
    assert "0.9100 ± 0.0141 (2)" in md and "1 diverged" in md
    rows = list(csv.DictReader(io.StringIO(tables.to_csv(lines, header))))
    assert [r["row"] for r in rows] == [line["row"] for line in lines]
    assert json.loads(tables.to_json(lines, header))["rows"][0]["n"] == 2
    latex = tables.to_latex(lines, header)
    assert r"\begin{tabular}" in latex and r"t1\_01\_softmax" in latex and r"$\pm$" in latex


def test_ensemble_column_shows_the_rows_ensemble_accuracy_in_every_format():
    together = [
        {**record("t1_01_softmax", seed, 0.90), "ensemble_test_accuracy": 0.93} for seed in (0, 1)
    ]
    alone = [{**record("t1_02_900_relu", 0, 0.95), "replicas_trained_together": 1}]
    apart = [  # seeds 0 and 1 in one process, seed 2 in another: no ensemble of all three
        {**record("t1_04_625_441_relu6", 0, 0.98), "ensemble_test_accuracy": 0.99},
        {**record("t1_04_625_441_relu6", 1, 0.98), "ensemble_test_accuracy": 0.99},
        {**record("t1_04_625_441_relu6", 2, 0.98), "replicas_trained_together": 1},
    ]
    lines = tables.build(together + alone + apart, "seed_table")
    assert [line["ensemble"] for line in lines] == [0.93, None, None]
    column = tables.HEADERS.index("ensemble")
    md = [row.split(" | ") for row in tables.to_markdown(lines, []).splitlines() if " | " in row]
    assert [row[column] for row in md] == ["ensemble", "0.9300", "—", "—"]
    latex = [row.split(" & ") for row in tables.to_latex(lines, []).splitlines() if " & " in row]
    assert [row[column] for row in latex] == ["ensemble", "0.9300", "--", "--"]
    rows = list(csv.DictReader(io.StringIO(tables.to_csv(lines, []))))
    assert [r["ensemble"] for r in rows] == ["0.93", "", ""]
    rows = json.loads(tables.to_json(lines, []))["rows"]
    assert [r["ensemble"] for r in rows] == [0.93, None, None]


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    history = [
        {
            "step": s,
            "train_loss": [1 / s, 2 / s],
            "val_accuracy": [0.9, 0.91],
            "test_accuracy": [0.89, 0.9],
        }
        for s in (100, 200)
    ]
    labels = rng.integers(0, 10, 50)
    predicted = np.where(rng.random(50) < 0.8, labels, (labels + 1) % 10)
    paths = plots.run_figures(
        history, rng.random((50, 784)), labels, predicted, str(tmp_path), "run"
    )
    lines = tables.build(RECORDS, "seed_table")
    paths.append(plots.table_chart(lines, str(tmp_path / "table.png")))
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
