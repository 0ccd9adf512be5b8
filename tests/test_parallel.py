"""Several devices: four virtual CPU devices in one process, and a run across two processes."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from mlp_jax.core import train
from mlp_jax.core.config import Config
from tests.helpers import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        jax.default_backend() != "cpu",
        reason="needs the CPU backend: splits the host into virtual CPU devices, compares CPU runs",
    ),
]


def host_devices(count: int) -> dict[str, str]:
    """The environment of a process that sees `count` CPU devices (XLA's other flags kept)."""
    flags = os.environ.get("XLA_FLAGS", "")
    return {"XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={count}".strip()}


# Runs in a process that sees four CPU devices; writes what the test compares.
SCRIPT = """
import dataclasses, functools, json, sys
import jax, jax.numpy as jnp, numpy as np
from mlp_jax.core import data, parallel, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
dataset, out = data.load("mnist", sys.argv[1]), sys.argv[2]
base = Config(hidden=(64,), steps=50, eval_every=25, num_seeds=4)
report, params = {}, {}
for name, cfg in [("one", dataclasses.replace(base, devices=1)), ("batch", base),
                  ("seeds", dataclasses.replace(base, parallel="seeds"))]:
    fit = train.fit(cfg, dataset)
    params[name] = np.concatenate([np.ravel(p) for p in jax.tree.leaves(fit.params)])
    kernel = fit.params["params"]["Dense_0"]["kernel"]
    report[name] = {"devices": fit.device_count, "loss": fit.train_loss.tolist(),
                    "test": fit.test_accuracy.tolist(),
                    "shard_rows": kernel.addressable_shards[0].data.shape[0]}
cfg = base
where = parallel.placement(cfg, jax.devices())
model, tx = train.make_model(cfg), train.make_optimizer(cfg, 50)
init = jax.jit(functools.partial(train.init_replicas, cfg), out_shardings=where.replicas)
replicas = init(jnp.arange(4), dataset)
report["hlo"] = train.chunk_program(cfg, model, tx, where).lower(
    replicas, jax.device_put(dataset, where.whole), jnp.arange(25)).compile().as_text()
for name, bad in [("seeds_3", dataclasses.replace(base, num_seeds=3, parallel="seeds")),
                  ("devices_5", dataclasses.replace(base, devices=5))]:
    try:
        train.fit(bad, dataset)
    except InputError as e:
        report[name] = str(e)
np.savez(out + ".npz", **params)
with open(out + ".json", "w") as f:
    json.dump(report, f)
"""


@pytest.fixture(scope="module")
def four_devices(mnist_dir, tmp_path_factory):
    """Train SCRIPT's config on one of four devices, data parallel over four, replicas spread."""
    if not mnist_dir:
        pytest.skip("needs MLP_JAX_DATA")
    out = str(tmp_path_factory.mktemp("four") / "run")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, mnist_dir, out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **host_devices(4), "PYTHONPATH": REPO},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out + ".json", encoding="utf-8") as f:
        return json.load(f), dict(np.load(out + ".npz"))


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("mode", ["batch", "seeds"])
def test_four_devices_match_one_up_to_rounding(four_devices, mode):
    report, params = four_devices
    assert report["one"]["devices"] == 1 and report[mode]["devices"] == 4
    assert relative_difference(params[mode], params["one"]) < 1e-5
    np.testing.assert_allclose(report[mode]["loss"], report["one"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(report[mode]["test"], report["one"]["test"], atol=3e-4)


def test_data_parallel_splits_the_batch_and_reduces_gradients(four_devices):
    report, _ = four_devices
    assert "all-reduce" in report["hlo"]
    assert "f32[4,25,784]" in report["hlo"]  # 4 replicas, a quarter of the 100 images each


def test_spread_replicas_live_one_per_device(four_devices):
    report, _ = four_devices
    assert report["seeds"]["shard_rows"] == 1 and report["batch"]["shard_rows"] == 4


def test_impossible_layouts_say_what_is_accepted(four_devices):
    report, _ = four_devices
    assert "--num_seeds 3 over 4 devices; accepted: a multiple of 4" in report["seeds_3"]
    assert (
        "--devices 5 asks for more devices than the 4 visible; accepted: 0..4"
        in (report["devices_5"])
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_as_one_run(mnist_dir, mnist, tmp_path):
    """jax.distributed joins two processes of two CPU devices each into one run of four."""
    if not mnist_dir:
        pytest.skip("needs MLP_JAX_DATA")
    out, port = tmp_path / "runs.jsonl", free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.mlp",
                "--hidden=64",
                "--steps=50",
                "--eval_every=25",
                "--num_seeds=2",
                f"--data_dir={mnist_dir}",
                f"--out={out}",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **os.environ,
                **host_devices(2),
                "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                "JAX_NUM_PROCESSES": "2",
                "JAX_PROCESS_ID": str(index),
            },
        )
        for index in range(2)
    ]
    for proc in procs:
        log = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, log[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["seed"], r["device_count"]) for r in records] == [(0, 4), (1, 4)]  # written once
    alone = train.fit(Config(hidden=(64,), steps=50, eval_every=25, num_seeds=2), mnist)
    np.testing.assert_allclose(
        [r["test_accuracy"] for r in records], alone.test_accuracy, atol=3e-4
    )
