"""Studies: axes typed on the command line, named products, pivot tables and their statistics."""

import csv
import io
import json

import numpy as np
import pytest
from scipy import stats

from experiments import cli
from mlp_jax.campaign import grids, plots, tables
from mlp_jax.core import activations
from mlp_jax.core.errors import InputError
from tests.helpers import run_module
from tests.test_tables import record

TWO_AXES = grids.parse_study(["act=relu,tanh,sigmoid", "hidden=64,64/64"])


def test_axes_make_the_product_of_their_values_as_named_rows():
    rows = TWO_AXES.rows()
    assert [row.name for row in rows] == [
        "act-relu__hidden-64",
        "act-relu__hidden-64x64",
        "act-tanh__hidden-64",
        "act-tanh__hidden-64x64",
        "act-sigmoid__hidden-64",
        "act-sigmoid__hidden-64x64",
    ]
    assert rows[1].flags == {"act": "relu", "hidden": "64,64"}
    assert cli.row_config(rows[1], ["--steps=50"]).hidden == (64, 64)


def test_an_empty_value_is_a_cell_of_its_own():
    study = grids.parse_study(["hidden=,32", "augment=,noise,affine/elastic"])
    assert [row.name for row in study.rows()] == [
        "hidden-none__augment-none",
        "hidden-none__augment-noise",
        "hidden-none__augment-affinexelastic",
        "hidden-32__augment-none",
        "hidden-32__augment-noise",
        "hidden-32__augment-affinexelastic",
    ]
    configs = [cli.row_config(row, []) for row in study.rows()]
    assert [(c.hidden, c.augment) for c in configs[:3]] == [
        ((), ""),
        ((), "noise"),
        ((), "affine,elastic"),
    ]


@pytest.mark.parametrize(
    ("axes", "extra", "message"),
    [
        (["act"], [], "malformed --axis 'act'; accepted: FLAG=V1,V2"),
        (["=relu"], [], "malformed --axis '=relu'"),
        (["actx=relu"], [], "'actx' is not a flag a study can vary; accepted: dataset,"),
        (["seed=1,2"], [], "'seed' is not a flag a study can vary"),
        (["act=relu,relu"], [], "--axis 'act=relu,relu' repeats a value"),
        (["act=relu", "act=tanh"], [], "--axis act is given twice"),
        (["act=relu,tanh"], ["--act=elu"], "--act is an axis of the study and also given after"),
        (["batch_norm=true,false"], ["--nobatch_norm"], "--batch_norm is an axis of the study"),
    ],
)
def test_a_bad_axis_is_refused_in_one_line(axes, extra, message):
    with pytest.raises(InputError) as error:
        grids.study("mine", axes, extra)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_study_name_is_a_free_folder_name_and_a_value_a_valid_setting():
    with pytest.raises(InputError, match="'seed_table' is a named grid or study"):
        grids.study("seed_table", ["act=relu"])
    with pytest.raises(InputError, match="not a folder name"):
        grids.study("a/b", ["act=relu"])
    with pytest.raises(InputError, match="row act-relu7: unknown --act 'relu7'"):
        for row in grids.study("mine", ["act=relu,relu7"]).rows():
            cli.row_config(row, [])


@pytest.mark.parametrize("name", list(grids.STUDIES))
def test_every_cell_of_every_named_study_is_a_valid_run(name):
    rows = grids.get(name)
    assert len({row.name for row in rows}) == len(rows) == len(grids.STUDIES[name].cells())
    for row in rows:
        cli.row_config(row, [])


def test_named_studies_cover_what_they_teach():
    depth = grids.STUDIES["activation_depth"]
    assert depth.axes[0].values == activations.NAMES
    assert [len(v.split(",")) for v in depth.axes[1].values] == [1, 2, 3, 4]
    init = grids.STUDIES["init_activation"]
    assert set(init.axes[1].values) == {
        "normal",
        "zeros",
        "lecun_normal",
        "glorot_uniform",
        "he_normal",
    }
    assert cli.row_config(init.rows()[0], []).hidden == (128,) * 4
    assert grids.STUDIES["optimizer_lr"].axes[0].values == ("sgd", "momentum", "adam")


def study_records(study: grids.Study, accuracies: dict[str, list[float | None]]) -> list[dict]:
    """Records of each named cell, one per accuracy (None: a diverged run)."""
    return [
        {**record(name, seed, accuracy, diverged=accuracy is None)}
        for name, values in accuracies.items()
        for seed, accuracy in enumerate(values)
    ]


KNOWN = {
    "act-relu__hidden-64": [0.970, 0.972, 0.971],
    "act-relu__hidden-64x64": [0.975, 0.976, 0.977],  # best of the relu row
    "act-tanh__hidden-64": [0.960, 0.961, 0.962],
    "act-tanh__hidden-64x64": [0.950, 0.990, 0.955],  # best mean, but too spread to beat
    "act-sigmoid__hidden-64": [0.930, 0.931, None],  # one diverged: counted, not averaged
    "act-sigmoid__hidden-64x64": [0.940],  # a lone seed: no interval, no test
}


def test_pivot_has_the_shape_of_the_first_two_axes():
    (matrix,) = tables.pivot(study_records(TWO_AXES, KNOWN), TWO_AXES)
    assert (matrix["down"], matrix["across"]) == ("act", "hidden")
    assert matrix["rows"] == ["relu", "tanh", "sigmoid"]
    assert matrix["columns"] == ["64", "64x64"]
    assert [[cell["name"] for cell in row] for row in matrix["cells"]] == [
        [row.name for row in TWO_AXES.rows()[i : i + 2]] for i in (0, 2, 4)
    ]


def test_cells_carry_mean_std_confidence_interval_and_count_diverged_runs():
    (matrix,) = tables.pivot(study_records(TWO_AXES, KNOWN), TWO_AXES)
    for row in matrix["cells"]:
        for cell in row:
            finished = [a for a in KNOWN[cell["name"]] if a is not None]
            assert cell["n"] == len(finished) and cell["accuracies"] == finished
            assert cell["mean"] == pytest.approx(np.mean(finished))
            if len(finished) > 1:
                low, high = stats.t.interval(
                    0.95, len(finished) - 1, loc=np.mean(finished), scale=stats.sem(finished)
                )
                assert (cell["ci_low"], cell["ci_high"]) == (
                    pytest.approx(max(low, 0)),
                    pytest.approx(min(high, 1)),
                )
            else:
                assert cell["ci_low"] is None and cell["ci_high"] is None
    sigmoid = matrix["cells"][2][0]
    assert sigmoid["diverged"] == 1 and sigmoid["mean"] == pytest.approx(0.9305)


def test_markers_follow_welchs_t_test_against_the_best_of_each_row():
    (matrix,) = tables.pivot(study_records(TWO_AXES, KNOWN), TWO_AXES)
    for row in matrix["cells"]:
        measured = [c for c in row if c["n"]]
        best = max(measured, key=lambda c: c["mean"])
        for cell in row:
            if cell is best:
                assert cell["mark"] == tables.BEST
                continue
            if len(cell["accuracies"]) < 2 or len(best["accuracies"]) < 2:
                assert cell["mark"] == "" and cell["p_worse"] is None
                continue
            p = stats.ttest_ind(
                best["accuracies"], cell["accuracies"], equal_var=False, alternative="greater"
            ).pvalue
            assert cell["p_worse"] == pytest.approx(p)
            assert cell["mark"] == (tables.NOT_WORSE if p >= 0.05 else "")
    marks = [[cell["mark"] for cell in row] for row in matrix["cells"]]
    assert marks == [["", "★"], ["☆", "★"], ["", "★"]]


def test_identical_constant_cells_are_not_worse_and_all_diverged_cells_are_unmarked():
    stuck = {
        "act-relu__hidden-64": [0.1135, 0.1135],
        "act-relu__hidden-64x64": [0.1135, 0.1135],
        "act-tanh__hidden-64": [None, None],
        "act-tanh__hidden-64x64": [0.5, 0.6],
    }
    (matrix,) = tables.pivot(study_records(TWO_AXES, stuck), TWO_AXES)
    assert [[c["mark"] for c in row] for row in matrix["cells"][:2]] == [["★", "☆"], ["", "★"]]
    assert tables.cell_text(matrix["cells"][1][0]) == "2 diverged"
    assert tables.cell_text(matrix["cells"][2][0]) == "—"


def test_records_of_other_settings_are_left_out_of_the_pivot():
    records = study_records(TWO_AXES, KNOWN)
    configs = {r["name"]: r["config"] for r in records}
    other = [{**r, "config": {**r["config"], "lr": 0.1}, "test_accuracy": 0.5} for r in records]
    (matrix,) = tables.pivot(records + other, TWO_AXES, configs)
    assert matrix["cells"][0][0]["mean"] == pytest.approx(0.971)
    (mixed,) = tables.pivot(records + other, TWO_AXES)  # every record counts, the last per seed
    assert mixed["cells"][0][0]["mean"] == pytest.approx(0.5)


def test_further_axes_make_one_matrix_per_value_and_a_lone_axis_one_row():
    three = grids.parse_study(["act=relu,tanh", "hidden=64", "lr=0.1,0.5"])
    accuracies = {row.name: [0.9, 0.91] for row in three.rows()}
    matrices = tables.pivot(study_records(three, accuracies), three)
    assert [m["fixed"] for m in matrices] == [{"lr": "0.1"}, {"lr": "0.5"}]
    assert all(m["cells"][1][0]["name"].endswith(f"lr-{m['fixed']['lr']}") for m in matrices)
    one = grids.parse_study(["lr=0.1,0.5,1"])
    (matrix,) = tables.pivot(study_records(one, {"lr-0.5": [0.9, 0.91]}), one)
    assert matrix["rows"] == [""] and matrix["columns"] == ["0.1", "0.5", "1"]
    assert [c["mark"] for c in matrix["cells"][0]] == ["", "★", ""]


def test_every_study_format_shows_every_cell(tmp_path):
    matrices = tables.pivot(study_records(TWO_AXES, KNOWN), TWO_AXES)
    header = ["Command: `x`"]
    md = tables.study_markdown(matrices, header)
    assert md.startswith("Command: `x`") and "| act \\ hidden | 64 | 64x64 |" in md
    assert "| relu | 0.9710 ± 0.0010 (3) [0.9685, 0.9735] | 0.9760 ± 0.0010 (3) [" in md
    assert "| sigmoid | 0.9305 ± 0.0007 (2, 1 diverged) [" in md and "Welch" in md
    rows = list(csv.DictReader(io.StringIO(tables.study_csv(matrices, header))))
    assert [r["act"] for r in rows] == ["relu", "tanh", "sigmoid"]
    assert float(rows[0]["hidden=64x64 mean"]) == pytest.approx(0.976)
    assert rows[0]["hidden=64x64 mark"] == "★" and rows[2]["hidden=64 diverged"] == "1"
    loaded = json.loads(tables.study_json(matrices, header))
    assert loaded["matrices"][0]["cells"][1][0]["p_worse"] > 0.05
    latex = tables.study_latex(matrices, header)
    assert r"\begin{tabular}{lll}" in latex and latex.count(r"$^{\star}$") == 3
    path = plots.study_heatmap(matrices, str(tmp_path / "table.png"), "mine")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_prediction_interval_is_mean_plus_minus_t_s_root_one_plus_one_over_n():
    values = [0.981, 0.984, 0.983, 0.985, 0.982]
    low, high = tables.prediction_interval(values)
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) * np.sqrt(1 + 1 / 5)
    assert (low, high) == (
        pytest.approx(np.mean(values) - half),
        pytest.approx(np.mean(values) + half),
    )
    assert tables.prediction_interval([0.98]) is None


def test_confidence_interval_of_accuracies_stays_within_zero_and_one():
    stuck_then_escaped = [0.1135, 0.1135, 0.9700]
    low, high = stats.t.interval(
        0.95, 2, loc=np.mean(stuck_then_escaped), scale=stats.sem(stuck_then_escaped)
    )
    assert low < 0 and high > 1  # Student's t alone would leave [0, 1]
    assert tables.confidence_interval(stuck_then_escaped) == (0.0, 1.0)
    assert tables.confidence_interval([0.98, 0.98]) == (0.98, 0.98)


@pytest.mark.slow
def test_table_export_refuses_axes_without_a_study_name_in_one_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text("")
    proc = run_module("experiments.table", f"--results={path}", "--axis=act=relu")
    assert proc.returncode == 2 and "--axis needs --grid, the study's name" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
