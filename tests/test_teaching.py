"""The teaching experiments: each runs briefly and shows what its docstring says it shows."""

import ast
import os
import pathlib
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax.core import chain_rule, data
from mlp_jax.uses import teaching
from tests.helpers import REPO, run_modules

IRIS = os.path.join(REPO, "..", "shared", "datasets", "iris")
# Each teaching experiment the slow tests run, with its arguments; OUT is their folder.
EXPERIMENTS = {
    "experiments.course.init_symmetry": ("--steps=200", "--out=OUT/s.md"),
    "experiments.course.toy2d": ("--steps=500", "--out=OUT/toy"),
    "experiments.course.approx": ("--widths=2,64", "--steps=1500", "--out=OUT/a"),
    "experiments.course.vanishing": ("--checkpoints=50", "--out=OUT/v"),
    "experiments.course.backprop": ("--out=OUT/b.md",),
    "experiments.course.activation_gallery": ("--out=OUT/g.png",),
    **(
        {"experiments.course.iris_neuron": (f"--data_dir={IRIS}", "--out=OUT/iris.md")}
        if os.path.isdir(IRIS)
        else {}
    ),
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Run every teaching experiment at once (see helpers.run_modules); return a function of a
    module giving its folder, its arguments and its stdout, once it has exited 0."""
    folder = tmp_path_factory.mktemp("teaching")
    jobs = {m: [a.replace("OUT", str(folder)) for a in args] for m, args in EXPERIMENTS.items()}
    procs = dict(zip(jobs, run_modules(*([m, *args] for m, args in jobs.items())), strict=True))

    def result(module: str) -> tuple[pathlib.Path, list[str], str]:
        proc = procs[module]
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return folder, jobs[module], proc.stdout

    return result


def assert_command(path, module: str, *args: str) -> None:
    """Assert the file at `path` records exactly the command `python -m module args` that ran."""
    (line,) = re.findall(r"^Command: `(.*)`", pathlib.Path(path).read_text(), re.M)
    assert shlex.split(line) == ["python", "-m", module, *args]


def table_rows(path) -> dict[str, list[str]]:
    rows = [
        line.split("|")[1:-1]
        for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines()
        if line.startswith("| ") and not line.startswith("|---")
    ]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


@pytest.mark.skipif(not os.path.isdir(IRIS), reason="needs ../shared/datasets/iris")
def test_iris_worked_example_matches_the_hand_computation():
    features, labels = data.load_iris(IRIS)
    assert features.shape == (150, 4) and np.bincount(labels).tolist() == [50, 50, 50]
    step = chain_rule.neuron_step(
        jnp.full(4, 0.1), jnp.array(0.1), jnp.asarray(features[:3]), jnp.array([0.0, 1.0, 0.0]), 0.5
    )
    # By hand: z = 0.1 * (row sum) + 0.1 = 1.12, 1.05, 1.04; y' = sigmoid(z).
    np.testing.assert_allclose(step["output"], [0.75399, 0.74077, 0.73885], atol=2e-5)
    assert float(step["loss"]) == pytest.approx(0.19693, abs=2e-5)
    assert float(step["grad_w"][0]) == pytest.approx(0.37980, abs=2e-5)
    assert float(step["w"][0]) == pytest.approx(0.1 - 0.5 * 0.37980, abs=2e-5)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(IRIS), reason="needs ../shared/datasets/iris")
def test_one_neuron_separates_setosa_from_versicolor(ran):
    tmp_path, args, out = ran("experiments.course.iris_neuron")
    assert out.count("test accuracy 1.00") == 2
    assert_command(tmp_path / "iris.md", "experiments.course.iris_neuron", *args)


@pytest.mark.slow
def test_zero_and_constant_initialisation_keep_units_identical(ran):
    tmp_path, args, _ = ran("experiments.course.init_symmetry")
    assert_command(tmp_path / "s.md", "experiments.course.init_symmetry", *args)
    rows = table_rows(tmp_path / "s.md")
    assert rows["zeros"][0] == rows["constant 0.1"][0] == "1"
    assert rows["normal 0.01"][0] == rows["lecun_normal"][0] == "64"
    assert float(rows["lecun_normal"][1]) > float(rows["zeros"][1]) + 0.3


@pytest.mark.slow
def test_a_hidden_layer_solves_xor_and_circles(ran):
    tmp_path, args, _ = ran("experiments.course.toy2d")
    assert_command(tmp_path / "toy.md", "experiments.course.toy2d", *args)
    rows = table_rows(tmp_path / "toy.md")
    assert float(rows["linearly separable"][0]) >= 0.95
    for name in ("xor", "circles"):
        single, hidden = map(float, rows[name])
        assert single < 0.75 and hidden > 0.9
    assert os.path.getsize(tmp_path / "toy.png") > 0


@pytest.mark.slow
def test_wider_layers_approximate_better(ran):
    tmp_path, args, _ = ran("experiments.course.approx")
    assert_command(tmp_path / "a.md", "experiments.course.approx", *args)
    rows = table_rows(tmp_path / "a.md")
    assert float(rows["64"][0]) < 0.25 * float(rows["2"][0])


@pytest.mark.slow
def test_sigmoid_gradients_vanish_and_relu_ones_do_not(ran):
    tmp_path, args, _ = ran("experiments.course.vanishing")
    assert_command(tmp_path / "v.md", "experiments.course.vanishing", *args)
    ratios = {
        (cells[0].strip(), cells[1].strip()): float(cells[-1])
        for cells in (
            line.split("|")[1:-1]
            for line in (tmp_path / "v.md").read_text().splitlines()
            if re.match(r"\| (sigmoid|relu) ", line)
        )
    }
    assert ratios[("sigmoid", "0")] < 1e-3 and ratios[("relu", "0")] > 0.1


@pytest.mark.slow
def test_backprop_experiment_agrees_with_autodiff(ran):
    tmp_path, args, out = ran("experiments.course.backprop")
    assert_command(tmp_path / "b.md", "experiments.course.backprop", *args)
    differences = [float(m) for m in re.findall(r"\| (\S+e[-+]\d+) \| \S+e[-+]\d+ \|", out)]
    assert len(differences) == 6 and max(differences) < 1e-7
    assert "- z1 = a0 W1 + b1 = [[0.3775, 0.3925]]" in out


@pytest.mark.slow
def test_activation_gallery(ran):
    tmp_path, _, out = ran("experiments.course.activation_gallery")
    worst = float(re.search(r"derivative over z in \[-7, 7\]: (\S+)", out).group(1))
    assert worst < 1e-5 and os.path.getsize(tmp_path / "g.png") > 0


def test_distinct_units_and_toy_data():
    assert teaching.distinct_units(jnp.ones((4, 5))) == 1
    assert teaching.distinct_units(jnp.eye(5)) == 5
    sets = teaching.toy_datasets(100)
    assert set(sets) == {"linearly separable", "xor", "circles"}
    assert all(x.shape == (100, 2) and set(np.unique(y)) == {0, 1} for x, y in sets.values())


def default_outputs() -> dict[str, str]:
    """Return each course demo's default --out (ast: no flags defined here), by module."""
    found = {}
    folder = os.path.join(REPO, "experiments", "course")
    for module in pkgutil.iter_modules([folder]):
        tree = ast.parse(pathlib.Path(folder, f"{module.name}.py").read_text(encoding="utf-8"))
        found[module.name] = [
            ast.literal_eval(call.args[1])
            for call in ast.walk(tree)
            if isinstance(call, ast.Call)
            and ast.unparse(call.func).startswith("flags.DEFINE_")
            and ast.literal_eval(call.args[0]) == "out"
        ]
    return found


def test_every_demo_writes_outside_the_tracked_tree_by_default():
    """A demo run with its defaults leaves a clone clean: its --out is ignored by git."""
    if subprocess.run(["git", "-C", REPO, "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    outputs = default_outputs()
    assert {"backprop", "toy2d", "activation_gallery", "augment_demo"} <= set(outputs)
    for module, defaults in outputs.items():
        assert len(defaults) == 1, f"{module} defines no --out (or several)"
        ignored = subprocess.run(["git", "-C", REPO, "check-ignore", "-q", defaults[0]])
        assert ignored.returncode == 0, f"{module} writes {defaults[0]} by default, in the clone"


@pytest.mark.slow
def test_a_demo_run_with_its_defaults_leaves_a_copy_of_the_clone_clean(tmp_path):
    copy = tmp_path / "clone"
    for name in ("experiments", "mlp_jax"):
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(os.path.join(REPO, name), copy / name, ignore=skip)
    shutil.copy(os.path.join(REPO, ".gitignore"), copy)
    subprocess.run(["git", "init", "-q", str(copy)], check=True)

    def untracked() -> str:
        status = ["git", "-C", str(copy), "status", "--porcelain", "--untracked-files=all"]
        return subprocess.run(status, capture_output=True, text=True, check=True).stdout

    before = untracked()
    module = "experiments.course.activation_gallery"
    proc = subprocess.run(
        [sys.executable, "-m", module], cwd=copy, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert untracked() == before
    assert os.path.getsize(copy / "runs" / "teaching" / "activations.png") > 0
