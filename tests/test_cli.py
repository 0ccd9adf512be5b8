"""The entry point as a user runs it: every bad input in-process, and the one-line contract
(one `error:` line, exit code 2, no traceback) through the entry point's own main, in this
process and, once each, in a real one."""

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import traceback
import warnings

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import cli, mlp
from mlp_jax.core import config, data, settings, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.store import results
from tests.helpers import REPO, needs_cpu, run_module
from tests.test_data import write_folder


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_module("experiments.mlp", *args, env=env)


def run_in_process(monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess:
    """Run experiments.mlp's entry point (absl, its main, its one-line errors) with `args` in
    this process, as `run_cli` does in a new one: its exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["experiments.mlp", *args])
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # cli.run sets its own
    mlp.FLAGS.unparse_flags()
    capsys.readouterr()
    try:
        cli.run(mlp.main)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    except Exception:  # what would end a real process with a traceback
        traceback.print_exc()
        code = 1
    finally:
        mlp.FLAGS.unparse_flags()
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(sys.argv, code, out, err)


def check_one_line_error(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "step " not in proc.stdout  # refused before any training


BAD_FLAGS = [
    (["--act=relu7"], "unknown --act 'relu7'; accepted: relu, relu6, sigmoid"),
    (["--hidden=6x5"], "malformed --hidden '6x5'; accepted: comma-separated positive integers"),
    (["--hidden=-3"], "malformed --hidden '-3'"),
    (["--hidden=0"], "malformed --hidden '0'"),
    (["--dropout=1"], "--dropout 1.0 is out of range; accepted: [0, 1)"),
    (["--dropout=-0.5"], "--dropout -0.5 is out of range; accepted: [0, 1)"),
    (["--lr=0"], "--lr 0.0 is out of range; accepted: > 0"),
    (["--lr=nan"], "--lr nan is not a finite number; accepted: > 0"),
    (["--init_scale=inf"], "--init_scale inf is not a finite number; accepted: > 0"),
    (["--leaky_slope=-inf"], "--leaky_slope -inf is not a finite number"),
    (["--batch_size=-100"], "--batch_size -100 is out of range; accepted: > 0"),
    (["--steps=0"], "--steps 0 is out of range; accepted: > 0"),
    (["--epochs=-1"], "--epochs -1 is out of range; accepted: >= 0"),
    (["--optimizer=lbfgs"], "unknown --optimizer 'lbfgs'; accepted: sgd, momentum"),
    (["--weight_init=xavier"], "unknown --weight_init 'xavier'; accepted: normal, zeros"),
    (
        ["--bias_init=he_normal"],
        "unknown --bias_init 'he_normal'; accepted: normal, zeros, constant",
    ),
    (["--dataset=cifar10"], "unknown --dataset 'cifar10'; accepted: mnist, fashion_mnist"),
    (["--steps=many"], "flag --steps=many: invalid literal for int()"),
    (["--stepz=5"], "Unknown command line flag 'stepz'"),
    (["--matmul_dtype=float16"], "unknown --matmul_dtype 'float16'; accepted: float32, bfloat16"),
    (["--parallel=model"], "unknown --parallel 'model'; accepted: batch, seeds"),
    (["--devices=-1"], "--devices -1 is out of range; accepted: >= 0"),
    (["--augment=noise,blur"], "unknown --augment 'blur'; accepted: a comma-separated list"),
    (["--salt_pepper=1.5"], "--salt_pepper 1.5 is out of range; accepted: [0, 1)"),
    (["--grad=manual", "--matmul_dtype=bfloat16"], "--grad=manual covers plain float32 MLPs"),
    (["--grad=manual", "--act=prelu"], "--grad=manual has no hand-written derivative for 'prelu'"),
    (["--seed=-1"], "--seed -1 is out of range; accepted: >= 0"),
    (
        ["--seed=99999999999"],
        "--seed 99999999999 with --num_seeds 1 reaches seed 99999999999; accepted: seeds "
        "0..2147483647",
    ),
    (["--seed=2147483647", "--num_seeds=2"], "reaches seed 2147483648; accepted: seeds 0.."),
]


@pytest.mark.parametrize("args, message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_names_the_value_and_what_is_accepted(args, message):
    with pytest.raises(InputError) as error:
        cli.config_from_args(args)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("field", config.flag_fields(), ids=lambda f: f.name)
def test_every_setting_is_one_flag_with_its_help_default_and_bounds(field, monkeypatch):
    monkeypatch.delenv(cli.DATA_ENV, raising=False)
    values = flags.FlagValues()
    cli.define_config_flags(values)
    flag = values[field.name]
    assert flag.help == settings.help_text(field) and field.metadata["help"] in flag.help
    parsed = cli.config_from_args([])
    assert getattr(parsed, field.name) == getattr(Config(), field.name)
    within = field.metadata["within"]
    if within is not None:  # the bound is enforced by the flag's parse, not only documented
        below = within.low if within.low_open else within.low - 1
        with pytest.raises(InputError, match=f"--{field.name} .* accepted: "):
            cli.config_from_args([f"--{field.name}={below}"])


def test_the_largest_seed_is_what_jax_takes_exactly():
    cfg = cli.config_from_args(["--seed=2147483646", "--num_seeds=2"])
    keys = [jax.random.key_data(jax.random.key(s)) for s in (cfg.seed, cfg.seed + 1)]
    assert [int(k[-1]) for k in keys] == [2**31 - 2, 2**31 - 1]
    assert jnp.array([cfg.seed + 1]).dtype == jnp.int32


def test_only_defines_the_named_flags():
    values = flags.FlagValues()
    cli.define_config_flags(values, only=("data_dir",))
    assert list(values) == ["data_dir"] and "$MLP_JAX_DATA" in values["data_dir"].help


def test_a_batch_larger_than_the_training_split_is_refused(tiny):
    # tiny: 40 training images after 10 for validation.
    with pytest.raises(InputError, match=r"--batch_size 41 is larger than the training split"):
        train.fit(Config(hidden=(4,), batch_size=41, steps=1), tiny)
    train.fit(Config(hidden=(4,), batch_size=40, steps=1), tiny)  # the whole split is fine


def test_validation_split_that_leaves_no_training_images_is_refused():
    arrays = {
        "train_images": np.zeros((50, 28, 28), np.uint8),
        "train_labels": np.zeros(50, np.uint8),
        "test_images": np.zeros((5, 28, 28), np.uint8),
        "test_labels": np.zeros(5, np.uint8),
    }
    with pytest.raises(InputError, match="--validation_size 50 leaves no training images"):
        data.to_device(arrays, 50, "t")
    one_left = data.to_device(arrays, 49, "t")
    with pytest.raises(InputError, match="--batch_size 100 is larger than the training split"):
        train.fit(Config(hidden=(4,), steps=1), one_left)


@pytest.mark.parametrize("where", ["folder", "missing_parent_file", "read_only"])
def test_out_that_cannot_take_records_is_refused(tmp_path, where):
    if where == "folder":
        path = tmp_path
    elif where == "missing_parent_file":
        blocker = tmp_path / "file"
        blocker.write_text("")
        path = blocker / "runs.jsonl"  # its parent is a file
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        path = locked / "runs.jsonl"
    with pytest.raises(InputError, match=f"--out '{path}' (is a folder|cannot be written)"):
        results.check_appendable(str(path))


def test_out_is_created_with_its_folders(tmp_path):
    path = tmp_path / "new" / "deeper" / "runs.jsonl"
    results.check_appendable(str(path))
    assert path.exists() and path.read_text() == ""


def test_infinite_settings_never_reach_a_record():
    with pytest.raises(InputError):
        dataclasses.replace(Config(), init_scale=float("inf"))
    json.dumps(dataclasses.asdict(Config()), allow_nan=False)


# Through real processes: what a user sees.


@pytest.mark.slow
@needs_cpu
def test_short_run_prints_and_records(mnist_dir, tmp_path):
    out = tmp_path / "runs.jsonl"
    data_flag = [f"--data_dir={mnist_dir}"] if mnist_dir else []
    proc = run_cli(
        "--hidden=64",
        "--act=relu",
        "--steps=200",
        "--eval_every=100",
        "--num_seeds=2",
        f"--out={out}",
        "--name=smoke",
        *data_flag,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("config: ") and "hidden=(64,)" in lines[0]
    assert lines[1].startswith("platform: cpu")
    assert sum(line.startswith("step ") for line in lines) == 2
    assert lines[-1].startswith("test_accuracy=") and "mean ± std over 2 seeds" in lines[-1]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["name"], r["seed"], r["steps"]) for r in records] == [
        ("smoke", 0, 200),
        ("smoke", 1, 200),
    ]
    assert all(r["test_accuracy"] > 0.85 for r in records)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--act=relu7"], "unknown --act 'relu7'"),
        (["--steps=many"], "flag --steps=many"),
        (["--init_scale=inf"], "--init_scale inf is not a finite number"),
        (["--batch_size=60000"], "--batch_size 60000 is larger than the training split"),
        (["--validation_size=59999"], "--batch_size 100 is larger than the training split"),
        (["--out=/tmp"], "--out '/tmp' is a folder"),
        (["--out=/proc/no/runs.jsonl"], "--out '/proc/no/runs.jsonl' cannot be written"),
        (["--data_dir=/no/such/folder"], "missing data folder '/no/such/folder'"),
        (["625", "441"], "unexpected argument(s) '625 441'; accepted: flags only"),
        (["--seed=99999999999"], "--seed 99999999999 with --num_seeds 1 reaches seed"),
        (["--plot_dir=/proc/no/figures"], "--plot_dir '/proc/no/figures' cannot be written"),
    ],
    ids=lambda a: a[0] if isinstance(a, list) else None,
)
def test_bad_input_is_one_line_and_exit_2(mnist_dir, monkeypatch, capsys, args, message):
    data_flag = [f"--data_dir={mnist_dir}"] if mnist_dir else []
    proc = run_in_process(monkeypatch, capsys, *data_flag, "--steps=5", *args)
    check_one_line_error(proc, message)


@pytest.mark.slow
def test_bad_input_ends_a_real_process_in_one_line_and_exit_2(mnist_dir):
    data_flag = [f"--data_dir={mnist_dir}"] if mnist_dir else []
    check_one_line_error(run_cli(*data_flag, "--steps=5", "--act=relu7"), "unknown --act 'relu7'")


@pytest.mark.slow
def test_corrupt_data_file_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for name in data.IDX_FILES.values():
        (folder / f"{name}.gz").write_bytes(b"\x1f\x8b garbage")
    proc = run_in_process(monkeypatch, capsys, f"--data_dir={folder}")
    check_one_line_error(proc, "corrupt data file")


@pytest.mark.slow
def test_offline_without_data_folder_says_what_to_do(tmp_path, monkeypatch, capsys):
    if data._reachable():
        pytest.skip("this machine can download; the offline message cannot show")
    monkeypatch.setenv("MLP_JAX_DATA", "")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    proc = run_in_process(monkeypatch, capsys, "--steps=10")
    check_one_line_error(proc, "--data_dir (or the MLP_JAX_DATA")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args", [["--num_seeds=100000", "--hidden=8"], ["--hidden=100000,100000", "--num_seeds=2"]]
)
def test_a_run_too_big_for_memory_is_one_line_and_exit_3(mnist_dir, monkeypatch, capsys, args):
    data_flag = [f"--data_dir={mnist_dir}"] if mnist_dir else []
    proc = run_in_process(monkeypatch, capsys, *data_flag, *args)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "of memory," in errors[0] and "available" in errors[0]
    assert "step " not in proc.stdout  # refused before any training


@pytest.mark.slow
def test_help_exits_0():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "--hidden" in proc.stdout, proc.stderr


def run_into_closed_pipe(module: str, *args: str) -> subprocess.CompletedProcess:
    """Run `python -m module args | head -0`: its stdout a pipe whose reader has gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write)


@pytest.mark.slow
def test_output_into_a_closed_pipe_loses_no_run_and_no_record(tmp_path):
    folder = write_folder(tmp_path / "data", n_train=60, n_test=20)
    out, workdir, committee = (str(tmp_path / name) for name in ("r.jsonl", "w", "c.jsonl"))
    trained = run_into_closed_pipe(
        "experiments.mlp",
        "--hidden=8",
        "--steps=20",
        "--eval_every=10",
        "--batch_size=10",
        "--validation_size=10",
        f"--data_dir={folder}",
        f"--out={out}",
        f"--workdir={workdir}",
    )
    assert trained.returncode == 0 and not trained.stderr, trained.stderr
    (record,) = results.read(out)
    assert record["steps"] == 20 and record["test_accuracy"] is not None
    evaluated = run_into_closed_pipe(
        "experiments.evaluate", f"--workdir={workdir}", f"--data_dir={folder}", f"--out={committee}"
    )
    assert evaluated.returncode == 0 and not evaluated.stderr, evaluated.stderr
    with open(committee, encoding="utf-8") as f:
        (voted,) = [json.loads(line) for line in f]
    assert voted["test_accuracy"] == record["test_accuracy"]


def test_command_line_is_the_command_that_ran_with_spaces_quoted():
    argv = ["--checkpoints=50", "--out=my results/v", "--name=it's"]
    command = cli.command_line("experiments.course.vanishing", argv)
    assert command.startswith(
        "python -m experiments.course.vanishing --checkpoints=50 '--out=my results/v'"
    )
    assert shlex.split(command) == ["python", "-m", "experiments.course.vanishing", *argv]
