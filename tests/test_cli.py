"""The entry point as a user runs it: a short real run, and every bad input."""

import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest

from mlp_jax import data
from tests.conftest import REPO


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.mlp", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


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


@pytest.fixture(scope="module")
def broken_folders(tmp_path_factory, mnist_dir):
    """IDX folders with one file missing, corrupt, or truncated (copies of the real labels)."""
    if not mnist_dir:
        pytest.skip("needs MLP_JAX_DATA")
    root = tmp_path_factory.mktemp("broken")
    folders = {}
    for kind in ("missing", "corrupt", "truncated"):
        folder = root / kind
        shutil.copytree(mnist_dir, folder)
        target = folder / "t10k-labels-idx1-ubyte.gz"
        if kind == "missing":
            target.unlink()
        elif kind == "corrupt":
            target.write_bytes(b"\x1f\x8b garbage")
        else:
            with gzip.open(mnist_dir + "/t10k-labels-idx1-ubyte.gz") as f:
                raw = f.read()
            target.write_bytes(gzip.compress(raw[:5000]))
        folders[kind] = str(folder)
    return folders


BAD_FLAGS = [
    (["--act=relu7"], "unknown activation 'relu7'; accepted: relu"),
    (["--hidden=6x5"], "malformed --hidden '6x5'"),
    (["--hidden=-3"], "malformed --hidden '-3'"),
    (["--hidden=0"], "malformed --hidden '0'"),
    (["--dropout=1"], r"--dropout 1.0 is outside [0, 1)"),
    (["--dropout=-0.5"], r"--dropout -0.5 is outside [0, 1)"),
    (["--lr=0"], "--lr must be positive"),
    (["--batch_size=-100"], "--batch_size must be positive"),
    (["--steps=0"], "--steps must be positive"),
    (["--optimizer=lbfgs"], "unknown --optimizer 'lbfgs'; accepted: sgd"),
    (["--weight_init=xavier"], "unknown initialiser 'xavier'; accepted: normal"),
    (["--dataset=cifar10"], "unknown --dataset 'cifar10'; accepted: mnist, fashion_mnist"),
    (["--steps=many"], "--steps"),
    (["--matmul_dtype=float16"], "unknown --matmul_dtype 'float16'; accepted: float32, bfloat16"),
    (["--parallel=model"], "unknown --parallel 'model'; accepted: batch, seeds"),
    (["--devices=-1"], "--devices must be >= 0 (0: every visible device), got -1"),
    (["--grad=manual", "--matmul_dtype=bfloat16"], "--grad=manual covers plain float32 MLPs"),
    (["--data_dir=/no/such/folder"], "missing data folder '/no/such/folder'"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[f[0][0] for f in BAD_FLAGS])
def test_bad_flag_is_one_line_and_exit_2(flags, message):
    check_one_line_error(run_cli(*flags), message)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "missing data file t10k-labels-idx1-ubyte"),
        ("corrupt", "corrupt data file"),
        ("truncated", "truncated IDX file"),
    ],
)
def test_bad_data_folder_is_one_line_and_exit_2(broken_folders, kind, message):
    check_one_line_error(run_cli(f"--data_dir={broken_folders[kind]}"), message)


def test_offline_without_data_folder_says_what_to_do(tmp_path):
    if data._reachable():
        pytest.skip("this machine can download; the offline message cannot show")
    env = {"MLP_JAX_DATA": "", "TFDS_DATA_DIR": str(tmp_path)}
    check_one_line_error(run_cli("--steps=10", env=env), "--data_dir (or the MLP_JAX_DATA")


def check_one_line_error(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
